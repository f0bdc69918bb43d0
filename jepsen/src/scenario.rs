//! The bundled scenarios: a fault schedule, a broker configuration, and, for
//! the negative controls, the checker that must find a violation.

use crate::nemesis::Fault;

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    pub fault: Fault,
    /// raftmq config file contents for every node.
    pub config: Option<&'static str>,
    /// A negative control: the checker that must report a violation.
    pub must_fail: Option<&'static str>,
}

const fn scenario(name: &'static str, fault: Fault, description: &'static str) -> Scenario {
    Scenario {
        name,
        description,
        fault,
        config: None,
        must_fail: None,
    }
}

pub const SCENARIOS: &[Scenario] = &[
    scenario("baseline", Fault::None, "no faults: the workloads alone"),
    scenario("partition-one", Fault::IsolateOne, "a random node cut off from the other two, then healed, repeatedly"),
    scenario("partition-leader", Fault::IsolateLeader, "the current leader cut off from the other two, then healed, repeatedly"),
    scenario("partition-bridge", Fault::Bridge, "a majority ring: one node sees both others, which cannot see each other"),
    scenario("partition-halves", Fault::Halves, "the nodes shuffled and split into two halves, then healed, repeatedly"),
    scenario("partition-flapping", Fault::Flapping, "short random half/half partitions in quick succession"),
    scenario("kill-one", Fault::KillOne, "SIGKILL of a random node, restarted a few seconds later, repeatedly"),
    scenario("kill-leader", Fault::KillLeader, "SIGKILL of the current leader, restarted a few seconds later, repeatedly"),
    scenario("pause", Fault::Pause, "SIGSTOP of a node (the leader half the time) for 2-5 s, then SIGCONT, repeatedly"),
    scenario("kill-all", Fault::KillAll, "SIGKILL of every node at once, all restarted, repeatedly"),
    scenario("leave-rejoin", Fault::Membership, "a node leaves (cluster leave -k) under load, is wiped, and joins again, repeatedly"),
    Scenario {
        name: "control-offline-limit",
        description: "negative control: max_offline_messages = 5 drops queued messages by configuration; the queue checker must report them lost",
        fault: Fault::None,
        config: Some("max_offline_messages = 5\n"),
        must_fail: Some("queue"),
    },
    Scenario {
        name: "control-amnesia",
        description: "negative control: every node killed, two of three wiped and restarted (they form a new, empty cluster), the third restarted later; the queue checker must report acknowledged messages lost",
        fault: Fault::Amnesia,
        config: None,
        must_fail: Some("queue"),
    },
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}
