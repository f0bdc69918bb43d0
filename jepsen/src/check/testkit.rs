//! Test-only builder of hand-written histories: a clock that ticks one
//! microsecond per event, op ids handed out in order, and shorthands for the
//! operations the checkers read.

use std::collections::HashMap;

use crate::history::{Event, History, Kind, Micros, Op, Workload};

/// A history under construction.
#[derive(Default)]
pub struct H {
    pub events: Vec<Event>,
    pub clock: Micros,
    next_id: u64,
    process_of: HashMap<u64, String>,
}

impl H {
    pub fn new() -> H {
        H::default()
    }

    /// Moves the clock forward to `t` (never back).
    pub fn at(&mut self, t: Micros) -> &mut H {
        self.clock = self.clock.max(t);
        self
    }

    fn push(&mut self, process: &str, op_id: u64, kind: Kind, op: Op) {
        self.clock += 1;
        self.events.push(Event {
            t: self.clock,
            process: process.to_string(),
            op_id,
            kind,
            op,
        });
    }

    /// Opens an operation; returns its id.
    pub fn invoke(&mut self, process: &str, op: Op) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.process_of.insert(id, process.to_string());
        self.push(process, id, Kind::Invoke, op);
        id
    }

    fn complete(&mut self, id: u64, kind: Kind, op: Op) {
        let process = self.process_of.get(&id).cloned().unwrap_or_default();
        self.push(&process, id, kind, op);
    }

    pub fn ok(&mut self, id: u64, op: Op) {
        self.complete(id, Kind::Ok, op)
    }

    pub fn fail(&mut self, id: u64, op: Op) {
        self.complete(id, Kind::Fail, op)
    }

    pub fn info(&mut self, id: u64, op: Op) {
        self.complete(id, Kind::Info, op)
    }

    /// Invokes and at once completes with `kind`.
    pub fn call(&mut self, process: &str, kind: Kind, op: Op) -> u64 {
        let id = self.invoke(process, op.clone());
        self.complete(id, kind, op);
        id
    }

    /// Records an observation.
    pub fn event(&mut self, process: &str, op: Op) {
        self.next_id += 1;
        let id = self.next_id;
        self.push(process, id, Kind::Event, op);
    }

    /// `client` received message `id` on `topic`.
    pub fn deliver(&mut self, w: Workload, client: &str, topic: &str, id: u64) {
        self.event(client, deliver(w, client, topic, id));
    }

    pub fn history(&self) -> History {
        History::new(self.events.clone())
    }
}

pub fn publish(w: Workload, client: &str, topic: &str, id: u64) -> Op {
    Op::Publish {
        workload: w,
        client: client.to_string(),
        node: 1,
        topic: topic.to_string(),
        id,
        qos: if w == Workload::ExactlyOnce { 2 } else { 1 },
    }
}

pub fn deliver(w: Workload, client: &str, topic: &str, id: u64) -> Op {
    Op::Deliver {
        workload: w,
        client: client.to_string(),
        node: 1,
        topic: topic.to_string(),
        id,
        qos: if w == Workload::ExactlyOnce { 2 } else { 1 },
        dup: false,
    }
}

pub fn subscribe(w: Workload, client: &str, topic: &str) -> Op {
    Op::Subscribe {
        workload: w,
        client: client.to_string(),
        node: 1,
        topic: topic.to_string(),
    }
}

pub fn connect(client: &str, conn: u64) -> Op {
    Op::Connect {
        workload: Workload::Registration,
        client: client.to_string(),
        conn,
        node: 1,
        clean: true,
    }
}

pub fn touch(client: &str, conn: u64) -> Op {
    Op::Touch {
        client: client.to_string(),
        conn,
        node: 1,
    }
}

pub fn write(key: &str, value: u64) -> Op {
    Op::Write {
        key: key.to_string(),
        node: 1,
        value,
    }
}

pub fn read(key: &str, value: Option<u64>) -> Op {
    Op::Read {
        key: key.to_string(),
        node: 1,
        value,
    }
}

/// A small deterministic generator (xorshift64*) for randomised tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
