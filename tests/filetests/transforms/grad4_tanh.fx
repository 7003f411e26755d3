{ lambda v0:f64[] .
  let v1:f64[] = const[1.0]
      v2:f64[] = tanh v0
      v3:f64[] = square v2
      v4:f64[] = sub v1 v3
      v5:f64[] = const[2.0]
      v6:f64[] = mul v2 v5
      v7:f64[] = const[-2.0]
      v8:f64[] = mul v4 v7
      v9:f64[] = const[4.0]
      v10:f64[] = mul v3 v9
      v11:f64[] = add v8 v10
      v12:f64[] = mul v4 v9
      v13:f64[] = sub v12 v11
      v14:f64[] = sub v13 v8
      v15:f64[] = mul v6 v14
      v16:f64[] = mul v4 v15
  in (v16) }
