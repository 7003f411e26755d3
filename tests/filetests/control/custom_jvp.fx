# A custom JVP rule for a numerically stable softplus log(1 + exp(x)); the second operand is a
# captured scale that is not differentiated (n_diff=1). The rule takes (x, k, tx) and returns
# the output and its tangent.
{ lambda v0:f64[], v1:f64[] .
  let v2:f64[] = call[kind=custom_jvp n_diff=1
          rule={ lambda v0:f64[], v1:f64[], v2:f64[] .
            let v3:f64[] = exp v0
                v4:f64[] = log1p v3
                v5:f64[] = mul v4 v1
                v6:f64[] = logistic v0
                v7:f64[] = mul v1 v6
                v8:f64[] = mul v7 v2
            in (v5, v8) }
          body={ lambda v0:f64[], v1:f64[] . let v2:f64[] = exp v0; v3:f64[] = log1p v2; v4:f64[] = mul v3 v1 in (v4) }] v0 v1
  in (v2) }
