# Conversions between every dtype, and stop_gradient.
{ lambda v0:f64[4] .
  let v1:f32[4] = convert[dtype=f32] v0
      v2:i32[4] = convert[dtype=i32] v1
      v3:bool[4] = convert[dtype=bool] v2
      v4:f64[4] = convert[dtype=f64] v3
      v5:f32[4] = stop_gradient v1
  in (v4, v5) }
