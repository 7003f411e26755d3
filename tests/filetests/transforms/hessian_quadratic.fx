{ lambda v0:f64[], v1:f64[] . let v2:f64[] = const[2.0] in (v2, v2, v2, v2) }
