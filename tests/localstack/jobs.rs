//! Jobs (`run --job`): a run refuses to start while an earlier run of its job still has
//! resources, or sweeps them first, as asked; another job's runs are never touched.

use microseg_harness::job::{EarlierRuns, Job};
use microseg_harness::run::{self, RunError, RunOptions, RunTarget};
use microseg_harness::run_id::TAG_JOB;

use crate::support::{SweepOnDrop, inventory_of, ledger_dir, microseg_on_shared, recipe, shared, text, timer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_leftovers_stop_its_next_run_or_are_swept_first() {
    let _t = timer();
    let (clients, caps, desc) = shared().await;
    let target = RunTarget::new(clients.clone(), &desc, caps);
    let job = Job::parse(&format!("jobs-test-{}", std::process::id())).unwrap();
    let dir = ledger_dir();
    let opts = |keep: bool, job: &Job, earlier: EarlierRuns| RunOptions {
        keep,
        ledger_dir: Some(dir.path().into()),
        no_signal_handler: true,
        job: Some(job.clone()),
        earlier_runs: earlier,
        ..Default::default()
    };

    // A run of the job that left its deployment (as a crash would).
    let first = run::run(&recipe(), &target, &opts(true, &job, EarlierRuns::Refuse)).await.unwrap();
    let _guard = SweepOnDrop::new(&clients, &first.run_id);
    let left = inventory_of(&clients, &first.run_id).await;
    assert!(!left.is_empty());
    // Its resources carry the job's label (EC2's, read back by tag).
    let vpc = first.bindings.vpc_id.clone().unwrap();
    let tags = clients
        .ec2
        .describe_tags()
        .filters(aws_sdk_ec2::types::Filter::builder().name("resource-id").values(&vpc).build())
        .send()
        .await
        .unwrap();
    assert!(tags.tags().iter().any(|t| t.key() == Some(TAG_JOB) && t.value() == Some(job.as_str())), "{tags:?}");

    // The next run of the job refuses, through the command line: exit 3, naming the run.
    let out = microseg_on_shared(&["run", "--quiet", "--job", job.as_str()]);
    assert_eq!(out.status.code(), Some(microseg_cli::exit::TARGET_UNAVAILABLE), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("job {job}: earlier run(s) still have resources: {}", first.run_id)), "{err}");
    assert!(err.contains("--earlier-runs sweep"), "{err}");
    // It built nothing: the first run's resources are all there is of the job.
    assert_eq!(inventory_of(&clients, &first.run_id).await, left);

    // Another job is not held up, and leaves the first job's run alone.
    let other = Job::parse(&format!("jobs-test-other-{}", std::process::id())).unwrap();
    let unrelated = run::run(&recipe(), &target, &opts(false, &other, EarlierRuns::Sweep)).await.unwrap();
    assert!(unrelated.swept_earlier_runs.is_empty() && unrelated.leftovers.is_empty(), "{:?}", unrelated.leftovers);
    assert_eq!(inventory_of(&clients, &first.run_id).await, left);

    // Asked to, the next run of the job sweeps the first one, then runs.
    let next = run::run(&recipe(), &target, &opts(false, &job, EarlierRuns::Sweep)).await.unwrap();
    assert_eq!(next.swept_earlier_runs, std::slice::from_ref(&first.run_id));
    assert!(next.leftovers.is_empty() && next.interruption.is_none(), "{:?}", next.interruption);
    assert!(inventory_of(&clients, &first.run_id).await.is_empty());

    // With nothing left, a refusing run starts.
    let last = run::run(&recipe(), &target, &opts(false, &job, EarlierRuns::Refuse)).await;
    assert!(!matches!(last, Err(RunError::EarlierRunsRemain { .. })), "{last:?}");
}
