# Every binary op, comparison, logical op and select, on rank-2 f32 operands.
{ lambda v0:f32[2,3], v1:f32[2,3], v2:i32[2,3] .
  let v3:f32[2,3] = add v0 v1
      v4:f32[2,3] = sub v0 v1
      v5:f32[2,3] = mul v0 v1
      v6:f32[2,3] = div v0 v1
      v7:f32[2,3] = pow v0 v1
      v8:f32[2,3] = max v0 v1
      v9:f32[2,3] = min v0 v1
      v10:f32[2,3] = atan2 v0 v1
      v11:f32[2,3] = rem v0 v1
      v12:i32[2,3] = rem v2 v2
      v13:bool[2,3] = eq v0 v1
      v14:bool[2,3] = ne v0 v1
      v15:bool[2,3] = lt v0 v1
      v16:bool[2,3] = le v2 v2
      v17:bool[2,3] = gt v0 v1
      v18:bool[2,3] = ge v0 v1
      v19:bool[2,3] = and v13 v14
      v20:bool[2,3] = or v15 v16
      v21:bool[2,3] = not v19
      v22:f32[2,3] = select v21 v3 v11
  in (v22, v12) }
