# Shape ops with their static parameters, including rank 0 and zero-size results.
{ lambda v0:f64[2,3], v1:f64[], v2:f64[3] .
  let v3:f64[4,2,3] = broadcast_in_dim[shape=(4,2,3) dims=(1,2)] v0
      v4:f64[2,3] = broadcast_in_dim[shape=(2,3) dims=()] v1
      v5:f64[2,3] = broadcast_in_dim[shape=(2,3) dims=(1)] v2
      v6:f64[3,2] = reshape[shape=(3,2)] v0
      v7:f64[1] = reshape[shape=(1)] v1
      v8:f64[3,2] = transpose[perm=(1,0)] v0
      v9:f64[1,2] = slice[start=(1,0) limit=(2,3) stride=(1,2)] v0
      v10:f64[0,3] = slice[start=(2,0) limit=(2,3) stride=(1,1)] v0
      v11:f64[5,8] = pad[lo=(1,0) hi=(2,1) interior=(0,2)] v0 v1
      v12:f64[2,6] = concatenate[axis=1] v0 v5
      v13:f64[2,3] = concatenate[axis=0] v0 v10
      v14:f64[2,3] = rev[axes=(0,1)] v0
      v15:f64[] = rev[axes=()] v1
  in (v3, v4, v6, v7, v8, v9, v11, v12, v13, v14, v15) }
