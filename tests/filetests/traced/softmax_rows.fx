{ lambda v0:f64[2,3] .
  let v1:f64[2] = reduce_max[axes=(1)] v0
      v2:f64[2] = stop_gradient v1
      v3:f64[2,3] = broadcast_in_dim[shape=(2,3) dims=(0)] v2
      v4:f64[2,3] = sub v0 v3
      v5:f64[2,3] = exp v4
      v6:f64[2] = reduce_sum[axes=(1)] v5
      v7:f64[2] = log v6
      v8:f64[2] = add v7 v2
      v9:f64[2,3] = broadcast_in_dim[shape=(2,3) dims=(0)] v8
      v10:f64[2,3] = sub v0 v9
      v11:f64[2,3] = exp v10
  in (v11) }
