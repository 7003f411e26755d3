# The linear map of a custom_vjp call, known only by its backward rule: one residual, then the
# tangent; the result is the output tangent.
{ lambda v0:f64[3], v1:f64[3] .
  let v2:f64[3] = custom_lin[n_res=1
          bwd={ lambda v0:f64[3], v1:f64[3] . let v2:f64[3] = mul v0 v1 in (v2) }] v0 v1
  in (v2) }
