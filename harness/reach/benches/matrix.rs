//! The full zone matrix on synthetic networks, doubling in size up to 200 subnets,
//! 1,000 groups and 50,000 rules (`cargo bench -p microseg-reach`). The rule lint is
//! measured beside it on the largest network.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use microseg_reach::synthetic::{self, Size};
use microseg_reach::{analyse, lint};

fn matrix(c: &mut Criterion) {
    let mut group = c.benchmark_group("matrix");
    group.sample_size(10);
    for scale in [8, 4, 2, 1] {
        let size = Size { subnets: 200 / scale, groups: 1000 / scale, rules: 50_000 / scale };
        let net = synthetic::network(size, 42);
        let id = format!("{}s-{}g-{}r", size.subnets, size.groups, size.rules);
        group.bench_with_input(BenchmarkId::from_parameter(id), &net, |b, net| b.iter(|| analyse(black_box(net), &[])));
    }
    group.finish();

    let net = synthetic::network(Size { subnets: 200, groups: 1000, rules: 50_000 }, 42);
    let mut group = c.benchmark_group("lint");
    group.sample_size(10);
    group.bench_function("200s-1000g-50000r", |b| {
        b.iter(|| {
            let n: usize = net.nacls.iter().map(|n| lint::nacl(n).len()).sum();
            let g: usize = net.groups.iter().map(|g| lint::group(g).len()).sum();
            black_box(n + g)
        })
    });
    group.finish();
}

criterion_group!(benches, matrix);
criterion_main!(benches);
