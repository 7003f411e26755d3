{ lambda v0:f64[], v1:f64[], v2:f64[] .
  let v3:f64[] = sin v0
      v4:f64[] = exp v1
      v5:f64[] = mul v3 v4
      v6:f64[] = log v2
      v7:f64[] = div v5 v6
  in (v7) }
