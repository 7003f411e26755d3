# dot_general as inner product, matrix product and batched matrix product.
{ lambda v0:f64[3], v1:f64[2,3], v2:f64[3,4], v3:f32[5,2,3], v4:f32[5,3,4] .
  let v5:f64[] = dot_general[lhs_contract=(0) rhs_contract=(0) lhs_batch=() rhs_batch=()] v0 v0
      v6:f64[2,4] = dot_general[lhs_contract=(1) rhs_contract=(0) lhs_batch=() rhs_batch=()] v1 v2
      v7:f32[5,2,4] = dot_general[lhs_contract=(2) rhs_contract=(1) lhs_batch=(0) rhs_batch=(0)] v3 v4
      v8:f64[3,3] = dot_general[lhs_contract=() rhs_contract=() lhs_batch=() rhs_batch=()] v0 v0
  in (v5, v6, v7, v8) }
