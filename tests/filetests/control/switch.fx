# A three-way switch with two results; each branch takes the operands after the index.
{ lambda v0:i32[], v1:f64[3], v2:f64[] .
  let v3:f64[3], v4:f64[] = switch[branches=(
          { lambda v0:f64[3], v1:f64[] . let v2:f64[3] = sin v0; v3:f64[] = reduce_sum[axes=(0)] v0 in (v2, v3) },
          { lambda v0:f64[3], v1:f64[] . let v2:f64[3] = cos v0 in (v2, v1) },
          { lambda v0:f64[3], v1:f64[] .
            let v2:f64[3] = broadcast_in_dim[shape=(3) dims=()] v1
                v3:f64[3] = mul v0 v2
                v4:f64[3] = exp v3
                v5:f64[] = reduce_max[axes=(0)] v4
                v6:f64[] = neg v5
            in (v4, v6) })] v0 v1 v2
  in (v3, v4) }
