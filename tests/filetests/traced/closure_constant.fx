{ lambda v0:f64[3] . let v1:f64[3] = const[1.0,2.0,3.0]; v2:f64[3] = mul v0 v1; v3:f64[] = reduce_sum[axes=(0)] v2 in (v3) }
