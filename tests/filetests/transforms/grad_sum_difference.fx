{ lambda v0:f64[], v1:f64[] .
  let v2:f64[] = add v0 v1
      v3:f64[] = sub v0 v1
      v4:f64[] = add v2 v3
      v5:f64[] = sub v3 v2
  in (v4, v5) }
