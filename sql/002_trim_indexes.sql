-- Open jobs are few (at most what is waiting to be answered), so the reaper
-- finds the ones past their deadline through jobs_open_idx alone. One index
-- less to maintain on every insert and claim.
DROP INDEX backchannel.jobs_open_deadline_idx;
