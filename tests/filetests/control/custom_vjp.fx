# A custom VJP: the forward rule returns the output and one residual, the backward rule maps
# (residual, output cotangent) to the cotangent of the one differentiable operand.
{ lambda v0:f64[3] .
  let v1:f64[3] = call[kind=custom_vjp n_diff=1
          fwd={ lambda v0:f64[3] . let v1:f64[3] = sin v0; v2:f64[3] = cos v0 in (v1, v2) }
          bwd={ lambda v0:f64[3], v1:f64[3] . let v2:f64[3] = mul v0 v1 in (v2) }
          body={ lambda v0:f64[3] . let v1:f64[3] = sin v0 in (v1) }] v0
  in (v1) }
