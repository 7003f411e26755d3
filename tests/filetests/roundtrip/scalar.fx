# Rank-0 values: the example from the design notes, printed on one line.
{ lambda v0:f64[], v1:f64[] . let v2:f64[] = sin v0; v3:f64[] = mul v2 v1 in (v3) }
