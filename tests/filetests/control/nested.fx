# Nested control flow: a while loop whose body runs a scan and a switch; every control
# equation has several results.
{ lambda v0:f64[4], v1:i32[] .
  let v2:f64[] = const[0.0]
      v3:i32[], v4:f64[], v5:f64[4] = while[n_consts=0
          cond={ lambda v0:i32[], v1:f64[], v2:f64[4] . let v3:i32[] = const[3]; v4:bool[] = lt v0 v3 in (v4) }
          body={ lambda v0:i32[], v1:f64[], v2:f64[4] .
            let v3:f64[], v4:f64[4] = scan[length=4 n_consts=0 n_carry=1 reverse=false
                    body={ lambda v0:f64[], v1:f64[] . let v2:f64[] = add v0 v1; v3:f64[] = mul v2 v1 in (v2, v3) }] v1 v2
                v5:f64[4], v6:f64[] = switch[branches=(
                    { lambda v0:f64[4], v1:f64[] . let v2:f64[4] = sin v0 in (v2, v1) },
                    { lambda v0:f64[4], v1:f64[] . let v2:f64[4] = cos v0; v3:f64[] = neg v1 in (v2, v3) })] v0 v4 v3
                v7:i32[] = const[1]
                v8:i32[] = add v0 v7
            in (v8, v6, v5) }] v1 v2 v0
  in (v4, v5, v3) }
