//! Poll timing of one device: its read blocks grouped by poll interval, each group with its own due time; pure (time comes in as an argument, the clock is never read).
//!
//! A group is polled at a fixed rate: the next due time is the previous due time plus the
//! interval, so one late poll (a request in the priority lane, a slow neighbour on the bus) does
//! not shift every later poll. A group that fell a whole interval behind is due again at once
//! rather than polled in a burst to catch up.

use std::time::Duration;

use tokio::time::Instant;

use crate::modbus::codec::ReadBlock;

/// The read blocks of one poll interval.
#[derive(Debug, Clone)]
pub(crate) struct PollGroup {
    /// How often the group is read.
    pub(crate) interval: Duration,
    /// Blocks read back to back when the group is due.
    pub(crate) blocks: Vec<ReadBlock>,
    /// When the group is due next; `None` until the schedule is started.
    next_due: Option<Instant>,
}

/// The poll groups of one device.
#[derive(Debug, Clone, Default)]
pub(crate) struct PollSchedule {
    groups: Vec<PollGroup>,
}

impl PollSchedule {
    /// Groups `blocks` by their [`ReadBlock::poll_interval`]; blocks without one use
    /// `device_interval`. Group order follows the first block of each interval.
    pub(crate) fn new(blocks: Vec<ReadBlock>, device_interval: Duration) -> Self {
        let mut groups: Vec<PollGroup> = Vec::new();
        for block in blocks {
            let interval = block.poll_interval.unwrap_or(device_interval);
            match groups.iter_mut().find(|g| g.interval == interval) {
                Some(group) => group.blocks.push(block),
                None => groups.push(PollGroup {
                    interval,
                    blocks: vec![block],
                    next_due: None,
                }),
            }
        }
        PollSchedule { groups }
    }

    /// Whether there is nothing to poll.
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.blocks.is_empty())
    }

    /// Every group becomes due at `now` (on connect, and when a device comes back).
    pub(crate) fn start(&mut self, now: Instant) {
        for group in &mut self.groups {
            group.next_due = Some(now);
        }
    }

    /// The group due longest ago at `now`, if any is due.
    pub(crate) fn due(&self, now: Instant) -> Option<usize> {
        self.groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.next_due.filter(|d| *d <= now).map(|d| (d, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// When the group due longest ago became due.
    pub(crate) fn due_since(&self, group: usize) -> Option<Instant> {
        self.groups.get(group).and_then(|g| g.next_due)
    }

    /// The group was polled; `now` is when its last block finished.
    pub(crate) fn polled(&mut self, group: usize, now: Instant) {
        if let Some(g) = self.groups.get_mut(group) {
            let next = g.next_due.unwrap_or(now) + g.interval;
            g.next_due = Some(if next < now { now } else { next });
        }
    }

    /// The earliest due time, or `None` before [`PollSchedule::start`] and when empty.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.groups
            .iter()
            .filter(|g| !g.blocks.is_empty())
            .filter_map(|g| g.next_due)
            .min()
    }

    /// The groups.
    pub(crate) fn group(&self, group: usize) -> Option<&PollGroup> {
        self.groups.get(group)
    }

    /// Replaces the blocks of a group (after splitting a refused merged read).
    pub(crate) fn set_blocks(&mut self, group: usize, blocks: Vec<ReadBlock>) {
        if let Some(g) = self.groups.get_mut(group) {
            g.blocks = blocks;
        }
    }

    /// Every block of every group.
    pub(crate) fn blocks(&self) -> impl Iterator<Item = &ReadBlock> {
        self.groups.iter().flat_map(|g| g.blocks.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::ModbusTable;

    fn block(start: u16, interval: Option<Duration>) -> ReadBlock {
        ReadBlock {
            table: ModbusTable::HoldingRegister,
            start,
            count: 1,
            points: vec![usize::from(start)],
            poll_interval: interval,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn groups_by_interval_and_runs_at_a_fixed_rate() {
        let t0 = Instant::now();
        let slow = Some(MS * 1000);
        let mut s = PollSchedule::new(
            vec![block(0, None), block(1, slow), block(2, Some(MS * 100))],
            MS * 100,
        );
        // The device default and an explicit 100 ms land in the same group.
        assert_eq!(s.group(0).map(|g| g.blocks.len()), Some(2));
        assert_eq!(s.group(1).map(|g| g.interval), Some(MS * 1000));
        assert_eq!(s.due(t0), None, "nothing is due before start");
        s.start(t0);
        assert_eq!(s.due(t0), Some(0));
        s.polled(0, t0 + MS * 30);
        assert_eq!(s.due(t0 + MS * 30), Some(1));
        s.polled(1, t0 + MS * 40);
        // Fixed rate: due at 100 ms although the poll ended at 30 ms.
        assert_eq!(s.next_due(), Some(t0 + MS * 100));
        assert_eq!(s.due(t0 + MS * 99), None);
        // Late by 50 ms: the next one is still due at 200 ms.
        s.polled(0, t0 + MS * 150);
        assert_eq!(s.due_since(0), Some(t0 + MS * 200));
        // More than a whole interval behind: due again at once, no burst.
        s.polled(0, t0 + MS * 450);
        assert_eq!(s.due_since(0), Some(t0 + MS * 450));
        assert_eq!(s.due_since(1), Some(t0 + MS * 1000));
    }

    #[test]
    fn the_group_waiting_longest_goes_first() {
        let t0 = Instant::now();
        let mut s = PollSchedule::new(vec![block(0, None), block(1, Some(MS * 50))], MS * 10);
        s.start(t0);
        s.polled(1, t0);
        s.polled(0, t0);
        // Group 0 due at 10, group 1 due at 50: at 60 group 0 (due since 10) goes first.
        assert_eq!(s.due(t0 + MS * 60), Some(0));
        assert!(!s.is_empty());
        assert!(PollSchedule::new(Vec::new(), MS).is_empty());
        assert_eq!(PollSchedule::new(Vec::new(), MS).next_due(), None);
    }
}
