# A taped while loop (reverse mode through `while` produces these): the forward body records x
# on the tape each iteration, and the step folds l = l * cos(x) + x over the tape from the last
# iteration to the first.
{ lambda v0:i32[], v1:i32[], v2:f64[2], v3:f64[2] .
  let v4:f64[2] = taped_while[n_consts=1 reverse=true
          cond={ lambda v0:i32[], v1:i32[], v2:f64[2] . let v3:bool[] = lt v1 v0 in (v3) }
          fwd={ lambda v0:i32[], v1:i32[], v2:f64[2] .
            let v3:i32[] = const[1]
                v4:i32[] = add v1 v3
                v5:f64[2] = sin v2
                v6:f64[2] = add v2 v5
            in (v4, v6, v2) }
          step={ lambda v0:f64[2], v1:f64[2] . let v2:f64[2] = cos v0; v3:f64[2] = mul v1 v2; v4:f64[2] = add v3 v0 in (v4) }] v0 v1 v2 v3
  in (v4) }
