# Every elementwise unary op, including integer_pow with positive and negative exponents.
{ lambda v0:f64[3], v1:i32[3] .
  let v2:f64[3] = neg v0
      v3:f64[3] = abs v0
      v4:f64[3] = sign v0
      v5:f64[3] = floor v0
      v6:f64[3] = ceil v0
      v7:f64[3] = round v0
      v8:f64[3] = sqrt v0
      v9:f64[3] = rsqrt v0
      v10:f64[3] = exp v0
      v11:f64[3] = exp2 v0
      v12:f64[3] = expm1 v0
      v13:f64[3] = log v0
      v14:f64[3] = log1p v0
      v15:f64[3] = sin v0
      v16:f64[3] = cos v0
      v17:f64[3] = tan v0
      v18:f64[3] = asin v0
      v19:f64[3] = acos v0
      v20:f64[3] = atan v0
      v21:f64[3] = sinh v0
      v22:f64[3] = cosh v0
      v23:f64[3] = tanh v0
      v24:f64[3] = asinh v0
      v25:f64[3] = acosh v0
      v26:f64[3] = atanh v0
      v27:f64[3] = logistic v0
      v28:f64[3] = erf v0
      v29:f64[3] = integer_pow[n=3] v0
      v30:f64[3] = integer_pow[n=-2] v0
      v31:f64[3] = square v0
      v32:f64[3] = reciprocal v0
      v33:i32[3] = neg v1
      v34:i32[3] = integer_pow[n=2] v1
  in (v32, v34) }
