{ lambda v0:f64[4,3], v1:i32[4] .
  let v2:f64[4] = reduce_max[axes=(1)] v0
      v3:f64[4] = stop_gradient v2
      v4:f64[4,3] = broadcast_in_dim[shape=(4,3) dims=(0)] v3
      v5:f64[4,3] = sub v0 v4
      v6:f64[4,3] = exp v5
      v7:f64[4] = reduce_sum[axes=(1)] v6
      v8:f64[4] = log v7
      v9:f64[4] = add v8 v3
      v10:i32[4,3] = broadcast_in_dim[shape=(4,3) dims=(0)] v1
      v11:i32[4,3] = const[[0,1,2],[0,1,2],[0,1,2],[0,1,2]]
      v12:bool[4,3] = eq v10 v11
      v13:f64[4,3] = convert[dtype=f64] v12
      v14:f64[4,3] = mul v0 v13
      v15:f64[4] = reduce_sum[axes=(1)] v14
      v16:f64[4] = sub v9 v15
      v17:f64[] = reduce_sum[axes=(0)] v16
      v18:f64[] = const[4.0]
      v19:f64[] = div v17 v18
  in (v19) }
