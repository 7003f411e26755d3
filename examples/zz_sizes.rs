fn main() {
    use ferrax::ir::*;
    println!("Op {} InstData {} ValueData {} Type {} Shape {}", std::mem::size_of::<Op>(), std::mem::size_of::<InstData>(), std::mem::size_of::<ValueData>(), std::mem::size_of::<Type>(), std::mem::size_of::<Shape>());
    println!("Shape {} Reduce {} Dot {} Conv {} Index {} Control {} Window {} Literal {}", std::mem::size_of::<ops::ShapeOp>(), std::mem::size_of::<ops::ReduceOp>(), std::mem::size_of::<ops::DotGeneral>(), std::mem::size_of::<ops::ConvGeneral>(), std::mem::size_of::<ops::IndexOp>(), std::mem::size_of::<ops::ControlOp>(), std::mem::size_of::<ops::WindowOp>(), std::mem::size_of::<ops::LiteralOp>());
}
