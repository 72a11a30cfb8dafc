"""The servers start, answer, and leave nothing behind."""

from __future__ import annotations

import time

import sqlalchemy as sa

from tests import servers


def test_postgres_database_is_fresh_and_writable(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = "
                                        "'public'")).scalar() == 0
            conn.execute(sa.text("CREATE TABLE t (id BIGSERIAL PRIMARY KEY)"))
            user = conn.execute(sa.text("SELECT current_user")).scalar()
        assert user == "babysit"
    finally:
        engine.dispose()


def test_s3_bucket_round_trip(s3: servers.S3) -> None:
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="probe/x", Body=b"abc")
    assert client.get_object(Bucket=s3.bucket, Key="probe/x")["Body"].read() == b"abc"
    client.delete_object(Bucket=s3.bucket, Key="probe/x")


def test_ray_head_runs_a_job(ray_head: servers.RayHead) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(ray_head.dashboard)
    job = client.submit_job(entrypoint="python -c 'print(6 * 7)'", entrypoint_num_cpus=1)
    deadline = time.monotonic() + 120
    while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED,
                                              JobStatus.STOPPED):
        assert time.monotonic() < deadline, "the job did not end in 120 s"
        time.sleep(0.2)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED
    assert "42" in client.get_job_logs(job)


def test_stopped_server_leaves_no_process() -> None:
    bin_dir = servers.pg_bin()
    if bin_dir is None:
        servers.missing("PostgreSQL server binaries not found")
    server = servers.Postgres.start(bin_dir)
    assert server.proc is not None
    pid = server.proc.pid
    server.stop()
    server.stop()     # twice is fine
    assert servers._session_pids(pid) == []
    assert not server.tmp.exists()
