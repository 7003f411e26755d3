{ lambda v0:f64[3,1], v1:f64[4] . let v2:f64[3,4] = broadcast_in_dim[shape=(3,4) dims=(0,1)] v0; v3:f64[3,4] = broadcast_in_dim[shape=(3,4) dims=(1)] v1; v4:f64[3,4] = add v2 v3 in (v4) }
