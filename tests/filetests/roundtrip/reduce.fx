# Reductions over several axes, none, and arg-reductions.
{ lambda v0:f64[2,3,4], v1:i32[5], v2:f64[] .
  let v3:f64[] = reduce_sum[axes=(0,1,2)] v0
      v4:f64[3] = reduce_max[axes=(0,2)] v0
      v5:f64[2,4] = reduce_min[axes=(1)] v0
      v6:f64[2,3,4] = reduce_prod[axes=()] v0
      v7:i32[] = reduce_sum[axes=(0)] v1
      v8:i32[2,4] = argmax[axis=1] v0
      v9:i32[] = argmin[axis=0] v1
      v10:f64[] = reduce_sum[axes=()] v2
  in (v3, v4, v5, v6, v7, v8, v9, v10) }
