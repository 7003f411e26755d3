{ lambda v0:f32[2] .
  let v1:f32[2] = const[2.0,2.0]
      v2:f32[2] = mul v1 v0
      v3:f32[2] = const[1.0,1.0]
      v4:f32[2] = add v2 v3
      v5:f32[2] = integer_pow[n=3] v0
      v6:f32[2] = sub v4 v5
  in (v6) }
