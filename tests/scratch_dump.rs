use ferrax::prelude::*;
use ferrax::Type;

fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.slice_axis(0, 0, n - 1);
    let tail = x.slice_axis(0, 1, n);
    (100.0 * (tail - head.square()).square() + (1.0 - head).square()).sum_all()
}
fn p7_f(x: Tensor, w: Tensor, b: Tensor) -> Tensor {
    w.matmul(&x).add(&b).tanh()
}
fn mlp_loss(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, x: Tensor, y: Tensor) -> Tensor {
    let h = x.matmul(&w1).add(&b1).tanh();
    (h.matmul(&w2).add(&b2) - y).square().mean_all()
}

#[test]
fn dump() {
    let n = std::env::var("N").ok().and_then(|s| s.parse().ok()).unwrap_or(100usize);
    let t = [Type::new(DType::F64, &[n])];
    println!("=== hessian\n{}", hessian(rosenbrock).ir_for(&t).unwrap());
    let tys = [Type::new(DType::F64, &[n]), Type::new(DType::F64, &[n, n]), Type::new(DType::F64, &[n])];
    println!("=== jacfwd\n{}", jacfwd(p7_f).ir_for(&tys).unwrap());
    println!("=== jacrev\n{}", jacrev(p7_f).ir_for(&tys).unwrap());
    let f = |s: &[usize]| Type::new(DType::F32, s);
    let mt = [f(&[784, 256]), f(&[256]), f(&[256, 10]), f(&[10]), f(&[256, 784]), f(&[256, 10])];
    println!("=== mlp\n{}", value_and_grad(mlp_loss).wrt((0, 1, 2, 3)).ir_for(&mt).unwrap());
}
