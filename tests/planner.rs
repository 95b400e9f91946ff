//! The planner table: every rule of DESIGN.md "Modes" as a named case.
//!
//! A case gives the mode, the state, both snapshots (with the hashes `hash_requests` would have
//! filled in) and the exact plan expected. Each row is its own #[test], so a failure names it.

use pairsync::core::model::{Entry, Kind, Observed, Side, Snapshot, State, StateRecord};
use pairsync::core::plan::{hash_requests, plan, Action, ConflictPolicy, Mode, PlanOptions};

use Side::{Destination as D, Source as S};

/// A file of `size` bytes with mtime `t` (seconds, for readability) and no hash.
fn f(size: u64, t: i64) -> Entry {
    Entry::file(size, t * 1_000_000_000)
}

/// The same with a known content hash; equal `h` means equal content.
fn fh(size: u64, t: i64, h: u8) -> Entry {
    Entry { hash: Some([h; 32]), ..f(size, t) }
}

fn dir() -> Entry {
    Entry::dir()
}

/// A file record: both sides were (size, t_source) / (size, t_destination), content `h`.
fn rf(size: u64, t_source: i64, t_destination: i64, h: Option<u8>) -> StateRecord {
    StateRecord {
        kind: Kind::File,
        source: Observed { size, mtime: t_source * 1_000_000_000 },
        destination: Observed { size, mtime: t_destination * 1_000_000_000 },
        hash: h.map(|h| [h; 32]),
    }
}

fn rd() -> StateRecord {
    StateRecord::dir()
}

fn snap(entries: &[(&str, Entry)]) -> Snapshot {
    entries.iter().map(|(p, e)| (p.to_string(), *e)).collect()
}

fn state(records: &[(&str, StateRecord)]) -> State {
    records.iter().map(|(p, r)| (p.to_string(), *r)).collect()
}

fn copy(from: Side, path: &str, entry: Entry, replaces: Option<Entry>) -> Action {
    Action::Copy { from, path: path.into(), entry, replaces: replaces.map(Box::new) }
}

fn mkdir(side: Side, path: &str) -> Action {
    Action::Mkdir { side, path: path.into() }
}

fn delete(side: Side, path: &str, entry: Entry) -> Action {
    Action::Delete { side, path: path.into(), entry }
}

fn rename(side: Side, from: &str, to: &str, entry: Entry, counterpart: Option<Entry>) -> Action {
    Action::Rename {
        side,
        from: from.into(),
        to: to.into(),
        entry: Box::new(entry),
        counterpart: counterpart.map(Box::new),
    }
}

fn record(path: &str, r: StateRecord) -> Action {
    Action::Record { path: path.into(), record: r }
}

/// The record written when both sides hold these files.
fn synced(path: &str, s: Entry, d: Entry) -> Action {
    record(path, StateRecord::synced(&s, &d, None))
}

fn forget(path: &str) -> Action {
    Action::Forget { path: path.into() }
}

struct Case {
    mode: Mode,
    policy: ConflictPolicy,
    state: State,
    source: Snapshot,
    destination: Snapshot,
    expect: Vec<Action>,
    /// Substrings of the conflict reasons expected, in order.
    conflicts: Vec<&'static str>,
}

fn case(mode: Mode, st: &[(&str, StateRecord)], source: &[(&str, Entry)], destination: &[(&str, Entry)]) -> Case {
    Case {
        mode,
        policy: ConflictPolicy::KeepBoth,
        state: state(st),
        source: snap(source),
        destination: snap(destination),
        expect: vec![],
        conflicts: vec![],
    }
}

impl Case {
    fn expect(mut self, actions: Vec<Action>) -> Self {
        self.expect = actions;
        self
    }
    fn conflicts(mut self, reasons: &[&'static str]) -> Self {
        self.conflicts = reasons.to_vec();
        self
    }
    fn policy(mut self, policy: ConflictPolicy) -> Self {
        self.policy = policy;
        self
    }

    fn check(self) {
        let options = PlanOptions { conflict: self.policy, conflict_stamp: "S".into(), ..PlanOptions::default() };
        let got = plan(self.mode, &self.state, &self.source, &self.destination, &options);
        let actions: Vec<Action> = got.actions().cloned().collect();
        let show = |actions: &[Action]| actions.iter().map(|a| format!("\n    {a:?}")).collect::<String>();
        assert_eq!(actions, self.expect, "\nactions:{}\nexpected:{}\n", show(&actions), show(&self.expect));
        let reasons: Vec<&str> = got.conflicts.iter().map(|c| c.reason.as_str()).collect();
        assert_eq!(reasons.len(), self.conflicts.len(), "conflicts: {:#?}", got.conflicts);
        for (reason, want) in reasons.iter().zip(&self.conflicts) {
            assert!(reason.contains(want), "conflict reason {reason:?} lacks {want:?}");
        }
    }
}

macro_rules! cases {
    ($($name:ident: $case:expr;)*) => {
        $( #[test] fn $name() { $case.check() } )*
    };
}

use Mode::{Clone, Simple, TwoWay};

cases! {
    // ---- simple: copy new and changed source files, never delete ----
    simple_copies_a_new_source_file:
        case(Simple, &[], &[("a", f(1, 10))], &[]).expect(vec![copy(S, "a", f(1, 10), None)]);
    simple_copies_a_changed_source_file:
        case(Simple, &[("a", rf(1, 10, 10, None))], &[("a", f(2, 20))], &[("a", f(1, 10))])
            .expect(vec![copy(S, "a", f(2, 20), Some(f(1, 10)))]);
    simple_never_deletes_on_the_destination:
        case(Simple, &[("a", rf(1, 10, 10, None))], &[], &[("a", f(1, 10))]).expect(vec![forget("a")]);
    simple_keeps_an_edit_made_only_on_the_destination:
        case(Simple, &[("a", rf(1, 10, 10, None))], &[("a", f(1, 10))], &[("a", f(2, 30))]).expect(vec![]);
    simple_overwrites_differing_destination_file_without_state:
        case(Simple, &[], &[("a", f(1, 10))], &[("a", f(2, 30))]).expect(vec![copy(S, "a", f(1, 10), Some(f(2, 30)))]);
    simple_skips_a_folder_where_the_destination_has_a_file:
        case(Simple, &[], &[("x", dir()), ("x/y", f(1, 1))], &[("x", f(3, 3))]).conflicts(&["a folder on the source"]);

    // ---- clone: the destination becomes an exact copy ----
    clone_deletes_destination_extras_and_records_equal_files:
        case(Clone, &[], &[("a", f(1, 10))], &[("a", f(1, 10)), ("b", f(2, 20))])
            .expect(vec![delete(D, "b", f(2, 20)), synced("a", f(1, 10), f(1, 10))]);
    clone_overwrites_an_edit_made_on_the_destination:
        case(Clone, &[("a", rf(1, 10, 10, None))], &[("a", f(1, 10))], &[("a", f(2, 30))])
            .expect(vec![copy(S, "a", f(1, 10), Some(f(2, 30)))]);
    clone_restores_a_file_deleted_on_the_destination:
        case(Clone, &[("a", rf(1, 10, 10, None))], &[("a", f(1, 10))], &[]).expect(vec![copy(S, "a", f(1, 10), None)]);
    clone_carries_a_source_delete:
        case(Clone, &[("a", rf(1, 10, 10, None))], &[], &[("a", f(1, 10))]).expect(vec![delete(D, "a", f(1, 10))]);
    clone_replaces_a_folder_by_a_file:
        case(Clone, &[], &[("x", f(5, 5))], &[("x", dir()), ("x/y", f(1, 1))])
            .expect(vec![delete(D, "x/y", f(1, 1)), delete(D, "x", dir()), copy(S, "x", f(5, 5), None)]);
    clone_replaces_a_file_by_a_folder:
        case(Clone, &[], &[("x", dir()), ("x/y", f(1, 1))], &[("x", f(5, 5))])
            .expect(vec![delete(D, "x", f(5, 5)), mkdir(D, "x"), copy(S, "x/y", f(1, 1), None)]);
    clone_carries_a_rename_as_a_rename:
        case(Clone, &[("a", rf(4, 10, 10, Some(7)))], &[("b", fh(4, 10, 7))], &[("a", f(4, 10))])
            .expect(vec![rename(D, "a", "b", f(4, 10), Some(fh(4, 10, 7)))]);

    // ---- two-way: first run merges ----
    first_run_merges_both_sides:
        case(TwoWay, &[], &[("a", f(1, 10))], &[("b", f(2, 20))])
            .expect(vec![copy(S, "a", f(1, 10), None), copy(D, "b", f(2, 20), None)]);
    first_run_records_equal_files_without_copying:
        case(TwoWay, &[], &[("a", f(5, 10))], &[("a", f(5, 10))]).expect(vec![synced("a", f(5, 10), f(5, 10))]);
    first_run_records_same_content_with_other_mtime:
        case(TwoWay, &[], &[("a", fh(5, 10, 1))], &[("a", fh(5, 99, 1))])
            .expect(vec![synced("a", fh(5, 10, 1), fh(5, 99, 1))]);
    first_run_keeps_both_of_differing_creations:
        case(TwoWay, &[], &[("a.txt", fh(5, 10, 1))], &[("a.txt", fh(5, 20, 2))])
            .expect(vec![
                rename(S, "a.txt", "a.conflict-S.txt", fh(5, 10, 1), None),
                copy(S, "a.conflict-S.txt", fh(5, 10, 1), None),
                copy(D, "a.txt", fh(5, 20, 2), None),
            ])
            .conflicts(&["created on both sides"]);
    first_run_records_a_folder_made_on_both_sides:
        case(TwoWay, &[], &[("d", dir())], &[("d", dir())]).expect(vec![record("d", rd())]);
    first_run_file_against_folder_keeps_both:
        case(TwoWay, &[], &[("x", f(3, 3))], &[("x", dir()), ("x/y", f(1, 1))])
            .expect(vec![
                rename(S, "x", "x.conflict-S", f(3, 3), None),
                mkdir(S, "x"),
                copy(S, "x.conflict-S", f(3, 3), None),
                copy(D, "x/y", f(1, 1), None),
            ])
            .conflicts(&["a file on one side, a folder on the other"]);

    // ---- two-way: changes on one side are carried ----
    nothing_changed_plans_nothing:
        case(TwoWay, &[("a", rf(1, 10, 12, None))], &[("a", f(1, 10))], &[("a", f(1, 12))]).expect(vec![]);
    source_edit_is_carried_to_the_destination:
        case(TwoWay, &[("a", rf(1, 10, 12, None))], &[("a", f(2, 20))], &[("a", f(1, 12))])
            .expect(vec![copy(S, "a", f(2, 20), Some(f(1, 12)))]);
    destination_edit_is_carried_to_the_source:
        case(TwoWay, &[("a", rf(1, 10, 12, None))], &[("a", f(1, 10))], &[("a", f(2, 30))])
            .expect(vec![copy(D, "a", f(2, 30), Some(f(1, 10)))]);
    source_delete_is_carried:
        case(TwoWay, &[("a", rf(1, 10, 12, None))], &[], &[("a", f(1, 12))]).expect(vec![delete(D, "a", f(1, 12))]);
    destination_delete_is_carried:
        case(TwoWay, &[("a", rf(1, 10, 12, None))], &[("a", f(1, 10))], &[]).expect(vec![delete(S, "a", f(1, 10))]);
    delete_on_both_sides_forgets_the_record:
        case(TwoWay, &[("a", rf(1, 10, 12, None))], &[], &[]).expect(vec![forget("a")]);
    source_folder_delete_is_carried_deepest_first:
        case(TwoWay, &[("d", rd()), ("d/e", rd()), ("d/e/x", rf(1, 1, 1, None))], &[], &[("d", dir()), ("d/e", dir()), ("d/e/x", f(1, 1))])
            .expect(vec![delete(D, "d/e/x", f(1, 1)), delete(D, "d/e", dir()), delete(D, "d", dir())]);

    // ---- two-way: an edit is never lost ----
    source_delete_against_destination_edit_restores_the_edit:
        case(TwoWay, &[("a", rf(1, 10, 12, None))], &[], &[("a", f(2, 30))])
            .expect(vec![copy(D, "a", f(2, 30), None)])
            .conflicts(&["deleted on the source, changed on the destination"]);
    destination_delete_against_source_edit_restores_the_edit:
        case(TwoWay, &[("a", rf(1, 10, 12, None))], &[("a", f(2, 20))], &[])
            .expect(vec![copy(S, "a", f(2, 20), None)])
            .conflicts(&["deleted on the destination, changed on the source"]);
    identical_edits_on_both_sides_only_update_the_state:
        case(TwoWay, &[("a", rf(1, 10, 12, Some(1)))], &[("a", fh(2, 20, 5))], &[("a", fh(2, 30, 5))])
            .expect(vec![synced("a", fh(2, 20, 5), fh(2, 30, 5))]);
    differing_edits_keep_both_and_the_newer_keeps_the_name:
        case(TwoWay, &[("r.txt", rf(1, 10, 12, Some(1)))], &[("r.txt", fh(2, 20, 5))], &[("r.txt", fh(3, 30, 6))])
            .expect(vec![
                rename(S, "r.txt", "r.conflict-S.txt", fh(2, 20, 5), None),
                copy(S, "r.conflict-S.txt", fh(2, 20, 5), None),
                copy(D, "r.txt", fh(3, 30, 6), None),
            ])
            .conflicts(&["changed on both sides"]);
    conflict_copy_never_overwrites_an_existing_name:
        case(TwoWay, &[("r.txt", rf(1, 10, 12, Some(1))), ("r.conflict-S.txt", rf(9, 9, 9, None))],
             &[("r.txt", fh(2, 40, 5)), ("r.conflict-S.txt", f(9, 9))], &[("r.txt", fh(3, 30, 6)), ("r.conflict-S.txt", f(9, 9))])
            .expect(vec![
                rename(D, "r.txt", "r.conflict-S-1.txt", fh(3, 30, 6), None),
                copy(D, "r.conflict-S-1.txt", fh(3, 30, 6), None),
                copy(S, "r.txt", fh(2, 40, 5), None),
            ])
            .conflicts(&["changed on both sides"]);
    conflict_policy_newer_overwrites_the_older:
        case(TwoWay, &[("a", rf(1, 10, 12, Some(1)))], &[("a", fh(2, 20, 5))], &[("a", fh(3, 30, 6))])
            .policy(ConflictPolicy::Newer)
            .expect(vec![copy(D, "a", fh(3, 30, 6), Some(fh(2, 20, 5)))])
            .conflicts(&["changed on both sides"]);
    conflict_policy_source_wins:
        case(TwoWay, &[("a", rf(1, 10, 12, Some(1)))], &[("a", fh(2, 20, 5))], &[("a", fh(3, 30, 6))])
            .policy(ConflictPolicy::Source)
            .expect(vec![copy(S, "a", fh(2, 20, 5), Some(fh(3, 30, 6)))])
            .conflicts(&["changed on both sides"]);
    conflict_policy_destination_wins:
        case(TwoWay, &[("a", rf(1, 10, 12, Some(1)))], &[("a", fh(2, 50, 5))], &[("a", fh(3, 30, 6))])
            .policy(ConflictPolicy::Destination)
            .expect(vec![copy(D, "a", fh(3, 30, 6), Some(fh(2, 50, 5)))])
            .conflicts(&["changed on both sides"]);

    // ---- two-way: folders ----
    deleted_folder_keeps_a_child_added_on_the_other_side:
        case(TwoWay, &[("d", rd()), ("d/x", rf(1, 1, 1, None))], &[], &[("d", dir()), ("d/new", f(2, 2)), ("d/x", f(1, 1))])
            .expect(vec![delete(D, "d/x", f(1, 1)), mkdir(S, "d"), copy(D, "d/new", f(2, 2), None)]);
    a_folder_holding_unsynced_entries_is_kept_not_deleted:
        case(TwoWay, &[("d", rd()), ("d/x", rf(1, 1, 1, None))], &[("d", Entry { holds_unsynced: true, ..dir() }), ("d/x", f(1, 1))], &[])
            .expect(vec![delete(S, "d/x", f(1, 1))]);
    deleted_folder_keeps_a_child_edited_on_the_other_side:
        case(TwoWay, &[("d", rd()), ("d/x", rf(1, 1, 1, None))], &[("d", dir()), ("d/x", f(5, 5))], &[])
            .expect(vec![mkdir(D, "d"), copy(S, "d/x", f(5, 5), None)])
            .conflicts(&["deleted on the destination, changed on the source"]);
    file_replaced_by_folder_is_carried:
        case(TwoWay, &[("x", rf(3, 3, 3, None))], &[("x", dir()), ("x/y", f(1, 1))], &[("x", f(3, 3))])
            .expect(vec![delete(D, "x", f(3, 3)), mkdir(D, "x"), copy(S, "x/y", f(1, 1), None)]);
    folder_replaced_by_file_is_carried:
        case(TwoWay, &[("x", rd()), ("x/y", rf(1, 1, 1, None))], &[("x", f(3, 3))], &[("x", dir()), ("x/y", f(1, 1))])
            .expect(vec![delete(D, "x/y", f(1, 1)), delete(D, "x", dir()), copy(S, "x", f(3, 3), None)]);
    file_replaced_by_folder_against_an_edit_keeps_both:
        case(TwoWay, &[("x", rf(3, 3, 3, None))], &[("x", dir()), ("x/y", f(1, 1))], &[("x", f(4, 4))])
            .expect(vec![
                rename(D, "x", "x.conflict-S", f(4, 4), None),
                mkdir(D, "x"),
                copy(D, "x.conflict-S", f(4, 4), None),
                copy(S, "x/y", f(1, 1), None),
            ])
            .conflicts(&["replaced by a folder on the source, changed on the destination"]);
    folder_replaced_by_file_against_an_edit_inside_keeps_both:
        case(TwoWay, &[("d", rd()), ("d/x", rf(1, 1, 1, None))], &[("d", f(3, 3))], &[("d", dir()), ("d/x", f(7, 7))])
            .expect(vec![
                rename(S, "d", "d.conflict-S", f(3, 3), None),
                mkdir(S, "d"),
                copy(S, "d.conflict-S", f(3, 3), None),
                copy(D, "d/x", f(7, 7), None),
            ])
            .conflicts(&["replaced by a file on the source, changed on the destination"]);

    // ---- two-way: renames, touches, shifted clocks ----
    rename_is_carried_as_a_rename:
        case(TwoWay, &[("a", rf(4, 10, 12, Some(7)))], &[("b", fh(4, 10, 7))], &[("a", f(4, 12))])
            .expect(vec![rename(D, "a", "b", f(4, 12), Some(fh(4, 10, 7)))]);
    rename_on_the_destination_is_carried_to_the_source:
        case(TwoWay, &[("a", rf(4, 10, 12, Some(7)))], &[("a", f(4, 10))], &[("b", fh(4, 12, 7))])
            .expect(vec![rename(S, "a", "b", f(4, 10), Some(fh(4, 12, 7)))]);
    rename_into_a_new_folder_makes_the_folder_first:
        case(TwoWay, &[("a", rf(4, 10, 12, Some(7)))], &[("n", dir()), ("n/a", fh(4, 10, 7))], &[("a", f(4, 12))])
            .expect(vec![mkdir(D, "n"), rename(D, "a", "n/a", f(4, 12), Some(fh(4, 10, 7)))]);
    rename_uses_the_unchanged_side_hash_when_the_record_has_none:
        case(TwoWay, &[("a", rf(4, 10, 12, None))], &[("b", fh(4, 10, 7))], &[("a", fh(4, 12, 7))])
            .expect(vec![rename(D, "a", "b", fh(4, 12, 7), Some(fh(4, 10, 7)))]);
    new_file_with_other_content_is_not_a_rename:
        case(TwoWay, &[("a", rf(4, 10, 12, Some(7)))], &[("b", fh(4, 10, 8))], &[("a", f(4, 12))])
            .expect(vec![delete(D, "a", f(4, 12)), copy(S, "b", fh(4, 10, 8), None)]);
    touch_causes_no_copy_and_no_conflict:
        case(TwoWay, &[("a", rf(5, 10, 12, Some(1)))], &[("a", fh(5, 99, 1))], &[("a", f(5, 12))])
            .expect(vec![record("a", rf(5, 99, 12, Some(1)))]);
    touch_on_both_sides_only_updates_the_state:
        case(TwoWay, &[("a", rf(5, 10, 12, None))], &[("a", fh(5, 98, 1))], &[("a", fh(5, 99, 1))])
            .expect(vec![synced("a", fh(5, 98, 1), fh(5, 99, 1))]);
    touch_against_an_edit_carries_the_edit:
        case(TwoWay, &[("a", rf(5, 10, 12, Some(1)))], &[("a", fh(5, 99, 1))], &[("a", f(6, 50))])
            .expect(vec![copy(D, "a", f(6, 50), Some(fh(5, 99, 1)))]);
    destination_clock_shifted_an_hour_causes_no_copies:
        case(TwoWay,
             &[("a", rf(1, 10, 10, Some(1))), ("b", rf(2, 20, 20, Some(2)))],
             &[("a", f(1, 10)), ("b", f(2, 20))],
             &[("a", fh(1, 3610, 1)), ("b", fh(2, 3620, 2))])
            .expect(vec![record("a", rf(1, 10, 3610, Some(1))), record("b", rf(2, 20, 3620, Some(2)))]);
    an_unhashed_mtime_change_is_taken_for_an_edit:
        case(TwoWay, &[("a", rf(5, 10, 12, Some(1)))], &[("a", f(5, 99))], &[("a", f(5, 12))])
            .expect(vec![copy(S, "a", f(5, 99), Some(f(5, 12)))]);
}

/// Hash requests: exactly the files whose content decides the plan.
#[test]
fn hash_requests_name_touched_files_possible_renames_and_first_run_ties() {
    let st = state(&[("touched", rf(5, 10, 10, None)), ("gone", rf(4, 1, 1, Some(3))), ("same", rf(1, 1, 1, None))]);
    let source =
        snap(&[("touched", f(5, 11)), ("moved", f(4, 1)), ("other", f(9, 1)), ("new", f(3, 1)), ("same", f(1, 1))]);
    let destination = snap(&[("touched", f(5, 10)), ("gone", f(4, 1)), ("new", f(3, 2)), ("same", f(1, 1))]);
    let got = hash_requests(TwoWay, &st, &source, &destination, &PlanOptions::default());
    let want: Vec<(Side, String)> = vec![
        (S, "moved".into()),   // same size as the deleted "gone": maybe a rename
        (S, "new".into()),     // on both sides, no record, same size, other mtime
        (S, "touched".into()), // size as recorded, mtime not
        (D, "new".into()),
        (D, "touched".into()), // the unchanged side gives the content the record lacks
    ];
    assert_eq!(got, want);
}

#[test]
fn checksum_hashes_every_recorded_file() {
    let st = state(&[("a", rf(1, 1, 1, Some(1)))]);
    let both = snap(&[("a", f(1, 1))]);
    let options = PlanOptions { checksum: true, ..PlanOptions::default() };
    assert_eq!(hash_requests(TwoWay, &st, &both, &both, &options), vec![(S, "a".into()), (D, "a".into())]);
    // With --checksum, a change of content at the same size and mtime is seen.
    let plan = plan(TwoWay, &st, &snap(&[("a", fh(1, 1, 2))]), &snap(&[("a", fh(1, 1, 1))]), &options);
    assert_eq!(plan.actions().cloned().collect::<Vec<_>>(), vec![copy(S, "a", fh(1, 1, 2), Some(fh(1, 1, 1)))]);
}

#[test]
fn modify_window_treats_close_mtimes_as_equal_without_state() {
    let options = PlanOptions { modify_window_ns: 2_000_000_000, ..PlanOptions::default() };
    let source = snap(&[("a", f(5, 10))]);
    let destination = snap(&[("a", f(5, 12))]);
    assert!(hash_requests(TwoWay, &State::new(), &source, &destination, &options).is_empty());
    let plan = plan(TwoWay, &State::new(), &source, &destination, &options);
    assert_eq!(plan.actions().cloned().collect::<Vec<_>>(), vec![synced("a", f(5, 10), f(5, 12))]);
}
