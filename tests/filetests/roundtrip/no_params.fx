# A graph without parameters and without outputs is still well formed.
{ lambda . let v0:f64[] = const[2.0] in () }
