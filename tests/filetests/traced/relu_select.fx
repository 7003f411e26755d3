{ lambda v0:f64[5] . let v1:f64[5] = const[0.0,0.0,0.0,0.0,0.0]; v2:bool[5] = gt v0 v1; v3:f64[5] = select v2 v0 v1 in (v3) }
