# Scans: a forward scan with a loop-invariant weight, a carry and stacked outputs, and a reverse
# scan over two sequences with no carry.
{ lambda v0:f64[], v1:f64[], v2:f64[5], v3:f64[4,2], v4:f64[4] .
  let v5:f64[], v6:f64[5] = scan[length=5 n_consts=1 n_carry=1 reverse=false
          body={ lambda v0:f64[], v1:f64[], v2:f64[] . let v3:f64[] = mul v0 v2; v4:f64[] = add v1 v3; v5:f64[] = sin v4 in (v4, v5) }] v0 v1 v2
      v7:f64[4,2], v8:f64[4] = scan[length=4 n_consts=0 n_carry=0 reverse=true
          body={ lambda v0:f64[2], v1:f64[] . let v2:f64[2] = broadcast_in_dim[shape=(2) dims=()] v1; v3:f64[2] = mul v0 v2; v4:f64[] = reduce_sum[axes=(0)] v3 in (v3, v4) }] v3 v4
  in (v5, v6, v7, v8) }
