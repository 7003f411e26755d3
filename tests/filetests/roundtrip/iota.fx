# iota in every numeric dtype, and zero-size dimensions flowing through elementwise ops.
{ lambda v0:f64[0,4] .
  let v1:i32[3,4] = iota[dtype=i32 shape=(3,4) axis=1]
      v2:f32[5] = iota[dtype=f32 shape=(5) axis=0]
      v3:f64[0,4] = iota[dtype=f64 shape=(0,4) axis=0]
      v4:f64[0,4] = add v0 v3
      v5:f64[4] = reduce_sum[axes=(0)] v4
  in (v1, v2, v5) }
