use super::*;
use crate::{DataType, TensorSpec};

/// A backend that doubles FP32 input `X` into `Y`, and panics on NaN.
struct Doubler(ModelMetadata);

impl Backend for Doubler {
    fn metadata(&self) -> &ModelMetadata {
        &self.0
    }
    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        let x = batch.inputs[0].to_vec::<f32>()?;
        assert!(!x.iter().any(|v| v.is_nan()), "NaN input");
        let y: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
        Ok(vec![Tensor::from_slice(
            "Y",
            batch.inputs[0].shape.clone(),
            &y,
        )?])
    }
}

fn doubler(_: usize) -> Result<Box<dyn Backend>> {
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        datatype: DataType::Fp32,
        dims: vec![1],
    };
    Ok(Box::new(Doubler(ModelMetadata {
        name: "doubler".into(),
        version: 1,
        platform: "test".into(),
        max_batch_size: 8,
        inputs: vec![spec("X")],
        outputs: vec![spec("Y")],
    })))
}

fn batch(pool: &InstancePool, v: f32) -> Batch {
    let x = Tensor::from_slice("X", vec![1, 1], &[v]).unwrap();
    pool.metadata().prepare(vec![x]).unwrap()
}

#[test]
fn many_threads_share_a_pool() {
    let pool = InstancePool::start("doubler", 3, doubler).unwrap();
    assert_eq!(pool.instances(), 3);
    std::thread::scope(|s| {
        for t in 0..8 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..50 {
                    let v = (t * 100 + i) as f32;
                    let y = pool.run_blocking(batch(pool, v)).unwrap();
                    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![v * 2.0]);
                }
            });
        }
    });
}

#[test]
fn a_panic_fails_one_request_and_the_worker_lives() {
    let pool = InstancePool::start("doubler", 1, doubler).unwrap();
    let err = pool
        .run_blocking(batch(&pool, f32::NAN))
        .unwrap_err()
        .to_string();
    assert!(err.contains("the bridge panicked: NaN input"), "{err}");
    assert_eq!(
        pool.run_blocking(batch(&pool, 2.0)).unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        vec![4.0]
    );
}

#[test]
fn a_job_past_its_deadline_is_answered_and_not_run() {
    let pool = InstancePool::start("doubler", 1, doubler).unwrap();
    let past = Instant::now();
    let rx = pool.submit(batch(&pool, f32::NAN), Some(past)).unwrap();
    let err = rx.blocking_recv().unwrap().unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(pool.stats().fail.count(), 1);
    assert_eq!(pool.stats().compute_infer.count(), 0);
}

#[test]
fn a_load_error_is_returned() {
    let err = InstancePool::start("broken", 2, |i| {
        if i == 1 {
            Err(Error::Unavailable("instance 1".into()))
        } else {
            doubler(i)
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("instance 1"), "{err}");
}
