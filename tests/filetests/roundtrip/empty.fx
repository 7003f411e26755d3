# Edge cases of the graph shape: no equations, an output used twice, a parameter as output.
{ lambda v0:f32[2], v1:i32[] . let in (v0, v1, v0) }
