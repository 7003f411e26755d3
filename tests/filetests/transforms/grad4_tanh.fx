{ lambda v0:f64[] .
  let v1:f64[] = const[1.0]
      v2:f64[] = tanh v0
      v3:f64[] = square v2
      v4:f64[] = sub v1 v3
      v5:f64[] = const[2.0]
      v6:f64[] = mul v2 v5
      v7:f64[] = neg v4
      v8:f64[] = mul v5 v7
      v9:f64[] = mul v6 v6
      v10:f64[] = add v8 v9
      v11:f64[] = add v4 v4
      v12:f64[] = mul v6 v11
      v13:f64[] = mul v4 v5
      v14:f64[] = sub v13 v10
      v15:f64[] = mul v5 v12
      v16:f64[] = mul v6 v14
      v17:f64[] = add v15 v16
      v18:f64[] = mul v4 v17
  in (v18) }
