{ lambda v0:f64[4,3], v1:f64[3,2], v2:f64[2] .
  let v3:f64[4,2] = dot_general[lhs_contract=(1) rhs_contract=(0) lhs_batch=() rhs_batch=()] v0 v1
      v4:f64[4,2] = broadcast_in_dim[shape=(4,2) dims=(1)] v2
      v5:f64[4,2] = add v3 v4
      v6:f64[4,2] = tanh v5
      v7:f64[] = reduce_sum[axes=(0,1)] v6
      v8:f64[] = const[8.0]
      v9:f64[] = div v7 v8
  in (v9) }
