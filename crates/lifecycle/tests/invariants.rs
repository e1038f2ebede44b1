//! Property tests over random pods and scripts:
//! * no regular container starts before every sidecar before it has started;
//! * no container is (re)started after termination began;
//! * a deleted pod is finished within grace + the 2s floor;
//! * the machine never panics and always settles.

use podrun_testkit::pod::{ContainerBuilder, container, pod, probe};
use podrun_testkit::sim::{Behaviour, HookScript, ProbeScript, Run, Sim};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Script {
    run: Option<(u8, bool)>,
    second_run_forever: bool,
    startup_after: Option<u8>,
    start_failures: u8,
    term_after: Option<u8>,
    post_start: u8,
    pre_stop: u8,
}

fn script() -> impl Strategy<Value = Script> {
    (
        proptest::option::of((0u8..20, any::<bool>())),
        any::<bool>(),
        proptest::option::of(0u8..4),
        0u8..3,
        proptest::option::of(0u8..6),
        0u8..6,
        0u8..6,
    )
        .prop_map(
            |(
                run,
                second_run_forever,
                startup_after,
                start_failures,
                term_after,
                post_start,
                pre_stop,
            )| Script {
                run,
                second_run_forever,
                startup_after,
                start_failures,
                term_after,
                post_start,
                pre_stop,
            },
        )
}

fn hook(n: u8) -> Option<HookScript> {
    match n {
        0 => None,
        1 => Some(HookScript::Ok(0.0)),
        2 => Some(HookScript::Ok(3.0)),
        3 => Some(HookScript::Fail(1.0, "boom".into())),
        4 => Some(HookScript::Hang),
        _ => Some(HookScript::Ok(1.0)),
    }
}

fn spec_and_behaviour(name: &str, s: &Script, probes: bool) -> (ContainerBuilder, Behaviour) {
    let mut c = container(name);
    let mut b = Behaviour::new().start_fails(usize::from(s.start_failures), "RunContainerError");
    if let Some((after, fail)) = s.run {
        let first = Run::Exit {
            after: f64::from(after),
            code: i32::from(fail),
        };
        let second = if s.second_run_forever {
            Run::Forever
        } else {
            first
        };
        b = b.runs(vec![first, second]);
    }
    b = match s.term_after {
        Some(t) => b.on_term(f64::from(t), 0),
        None => b.ignores_term(),
    };
    if probes {
        if let Some(n) = s.startup_after {
            c = c.startup_probe(probe().period(1).failure_threshold(5));
            b = b.startup(ProbeScript::succeed_after(u32::from(n)));
        }
        if let Some(h) = hook(s.post_start) {
            c = c.post_start();
            b = b.post_start(h);
        }
        if let Some(h) = hook(s.pre_stop) {
            c = c.pre_stop();
            b = b.pre_stop(h);
        }
    }
    (c, b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn lifecycle_invariants_hold(
        policy in prop::sample::select(vec!["Always", "OnFailure", "Never"]),
        inits in prop::collection::vec((any::<bool>(), script()), 0..4),
        mains in prop::collection::vec(script(), 1..3),
        delete in proptest::option::of((0u8..60, 0i64..10)),
    ) {
        let mut b = pod("p").restart_policy(policy).grace(10);
        let mut behaviours = Vec::new();
        for (i, (sidecar, s)) in inits.iter().enumerate() {
            let name = format!("init{i}");
            let (c, beh) = spec_and_behaviour(&name, s, *sidecar);
            b = if *sidecar { b.sidecar(c) } else { b.init(c) };
            behaviours.push((name, beh));
        }
        for (i, s) in mains.iter().enumerate() {
            let name = format!("main{i}");
            let (c, beh) = spec_and_behaviour(&name, s, true);
            b = b.container(c);
            behaviours.push((name, beh));
        }
        let mut sim = Sim::new(b.build());
        for (name, beh) in behaviours {
            sim = sim.script(&name, beh);
        }
        if let Some((at, grace)) = delete {
            sim.delete_at(f64::from(at), Some(grace));
        }
        let finished = sim.run_to_finish(3000.0);
        sim.check_invariants();
        if let Some((at, grace)) = delete {
            prop_assert!(finished, "deleted pod never finished:\n{}", sim.transcript_text());
            let bound = f64::from(at) + (grace as f64).max(0.0) + 2.0;
            prop_assert!(sim.at() <= bound, "finished at {} > {}:\n{}", sim.at(), bound, sim.transcript_text());
        }
        if finished {
            let st = sim.machine().status();
            for c in st.init_container_statuses.iter().flatten().chain(st.container_statuses.iter().flatten()) {
                prop_assert!(c.state.as_ref().is_some_and(|s| s.running.is_none()), "{} still running", c.name);
            }
        }
    }
}
