{ lambda v0:f64[] . let v1:f64[] = const[2.0]; v2:f64[] = mul v0 v1 in (v2) }
