# A while loop with one loop-invariant operand (a) and a carry (i, x): multiplies x by a while i < 10.
{ lambda v0:f64[], v1:i32[] .
  let v2:i32[], v3:f64[] = while[n_consts=1
          cond={ lambda v0:f64[], v1:i32[], v2:f64[] . let v3:i32[] = const[10]; v4:bool[] = lt v1 v3 in (v4) }
          body={ lambda v0:f64[], v1:i32[], v2:f64[] . let v3:i32[] = const[1]; v4:i32[] = add v1 v3; v5:f64[] = mul v2 v0 in (v4, v5) }] v0 v1 v0
  in (v3, v2) }
