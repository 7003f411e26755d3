# Indexing ops: cumulative sums, dynamic slices and updates, gathers and scatter-adds.
{ lambda v0:f64[5,3], v1:i32[], v2:i32[], v3:i32[4], v4:f64[4,3] .
  let v5:f64[5,3] = cumsum[axis=0 reverse=false] v0
      v6:f64[5,3] = cumsum[axis=1 reverse=true] v0
      v7:f64[2,3] = dynamic_slice[sizes=(2,3)] v0 v1 v2
      v8:f64[5,3] = dynamic_update_slice v0 v7 v1 v2
      v9:f64[4,3] = gather v0 v3
      v10:f64[5,3] = scatter_add v0 v3 v4
  in (v5, v6, v8, v9, v10) }
