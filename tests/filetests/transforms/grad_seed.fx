{ lambda v0:f64[], v1:f64[], v2:f64[] .
  let v3:f64[] = const[1.0]
      v4:f64[] = sin v0
      v5:f64[] = cos v0
      v6:f64[] = exp v1
      v7:f64[] = mul v4 v6
      v8:f64[] = log v2
      v9:f64[] = div v7 v8
      v10:f64[] = div v3 v8
      v11:f64[] = mul v9 v10
      v12:f64[] = div v11 v2
      v13:f64[] = neg v12
      v14:f64[] = mul v4 v10
      v15:f64[] = mul v6 v10
      v16:f64[] = mul v6 v14
      v17:f64[] = mul v5 v15
  in (v17, v16, v13) }
