# Checkpointed calls with both remat policies.
{ lambda v0:f64[2,3], v1:f64[3,4] .
  let v2:f64[2,4] = call[kind=checkpoint policy=dots
          body={ lambda v0:f64[2,3], v1:f64[3,4] . let v2:f64[2,4] = dot_general[lhs_contract=(1) rhs_contract=(0) lhs_batch=() rhs_batch=()] v0 v1; v3:f64[2,4] = tanh v2 in (v3) }] v0 v1
      v3:f64[2,4] = call[kind=checkpoint policy=nothing
          body={ lambda v0:f64[2,4] . let v1:f64[2,4] = sin v0 in (v1) }] v2
  in (v3) }
