# Windowed reductions (sum, max, min with strides, padding and both dilations) and the select
# ops of their derivatives.
{ lambda v0:f32[1,1,4,5], v1:f64[6], v2:i32[3,3] .
  let v3:f32[1,1,2,2] = reduce_window_max[window=(1,1,2,2) strides=(1,1,2,2) lo=(0,0,0,0) hi=(0,0,0,0) base_dilation=(1,1,1,1) window_dilation=(1,1,1,1)] v0
      v4:f64[4] = reduce_window_sum[window=(3) strides=(3) lo=(1) hi=(2) base_dilation=(2) window_dilation=(2)] v1
      v5:i32[2,2] = reduce_window_min[window=(2,2) strides=(1,1) lo=(0,0) hi=(0,0) base_dilation=(1,1) window_dilation=(1,1)] v2
      v6:f64[4] = select_and_gather_add[select=max window=(3) strides=(3) lo=(1) hi=(2) base_dilation=(2) window_dilation=(2)] v1 v1
      v7:f64[6] = select_and_scatter_add[select=min window=(3) strides=(3) lo=(1) hi=(2) base_dilation=(2) window_dilation=(2)] v6 v1
  in (v3, v4, v5, v7) }
