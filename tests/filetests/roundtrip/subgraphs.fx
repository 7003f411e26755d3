# Sub-graphs are carried after the outputs, each with its own names; they nest.
{ lambda v0:f64[] .
  let v1:f64[] = cos v0
  in (v1)
  where g0 = { lambda v0:f64[] . let v1:f64[] = neg v0 in (v1) }
        g1 = { lambda v0:f32[2], v1:f32[2] .
          let v2:f32[2] = mul v0 v1
              v3:f32[2] = add v2 v0
              v4:f32[2] = sub v3 v1
              v5:f32[2] = div v4 v0
          in (v5)
          where g0 = { lambda . let in () } } }
