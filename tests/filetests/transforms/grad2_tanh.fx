{ lambda v0:f64[] .
  let v1:f64[] = const[1.0]
      v2:f64[] = tanh v0
      v3:f64[] = square v2
      v4:f64[] = sub v1 v3
      v5:f64[] = const[2.0]
      v6:f64[] = mul v2 v5
      v7:f64[] = mul v4 v6
      v8:f64[] = neg v7
  in (v8) }
