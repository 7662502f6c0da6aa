DROP TABLE rollup_progress;
