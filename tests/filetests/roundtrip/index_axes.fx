# Gathers and scatters along axes: take-style and along-axis indices, clipped and filled bounds,
# and every scatter combine. Parameters at their defaults (axis 0, take, clip) are not printed.
{ lambda v0:f64[3,4,2], v1:i32[5], v2:i32[3,2,2], v3:f64[3,5,2], v4:f64[3,2,2] .
  let v5:f64[3,5,2] = gather[axis=1] v0 v1
      v6:f64[3,2,2] = gather[axis=1 along=true bounds=fill] v0 v2
      v7:f64[3,4,2] = scatter[axis=1] v0 v1 v3
      v8:f64[3,4,2] = scatter_add[axis=1 bounds=fill] v0 v1 v3
      v9:f64[3,4,2] = scatter_mul[axis=1 along=true] v0 v2 v4
      v10:f64[3,4,2] = scatter_min[axis=1 along=true bounds=fill] v0 v2 v4
      v11:f64[3,4,2] = scatter_max[axis=1] v0 v1 v3
  in (v5, v6, v7, v8, v9, v10, v11) }
