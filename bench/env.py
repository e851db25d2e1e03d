"""One bench environment: a fresh database, a tenant, the ceiling table, CostGraph's server
and the bare ceiling server — made once and shared by every workload of a run."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from bench.ceiling import create_ceiling_table
from bench.db import BenchTenant, bench_settings, create_tenant, fresh_database, integrator_token
from bench.server import BARE, COSTGRAPH, ServerConfig, free_port, started
from bench.tuning import apply as apply_tuning
from costgraph.app.settings import Settings
from costgraph.kernel.database_url import plain_url


@dataclass(frozen=True, slots=True)
class BenchEnv:
    url: str
    data_dir: Path
    settings: Settings
    tenant: BenchTenant
    #: An integrator's ``usage:write`` token for the tenant.
    token: str
    ours_port: int
    bare_port: int
    #: :mod:`bench.tuning` experiments in force (in this process and in CostGraph's server).
    tuning: tuple[str, ...]
    #: CostGraph's server process (its CPU time, a profiler attached to it).
    ours_pid: int = 0


@contextlib.asynccontextmanager
async def bench_env(server_url: str, tuning: tuple[str, ...] = ()) -> AsyncIterator[BenchEnv]:
    apply_tuning(tuning)
    async with fresh_database(server_url) as url:
        with tempfile.TemporaryDirectory(prefix="costgraph-bench-") as tmp:
            data_dir = Path(tmp)
            settings = bench_settings(data_dir, url)
            tenant = await create_tenant(settings, url)
            token = integrator_token(settings, tenant.org.id)
            connection = await asyncpg.connect(plain_url(url))
            try:
                await create_ceiling_table(connection)
            finally:
                await connection.close()
            org = str(tenant.org.id)
            configs = (
                ServerConfig(COSTGRAPH, free_port(), url, tmp, org, tuning=tuning),
                ServerConfig(BARE, free_port(), url, tmp, org),
            )
            async with started(*configs) as (ours, bare):
                yield BenchEnv(
                    url,
                    data_dir,
                    settings,
                    tenant,
                    token,
                    ours.port,
                    bare.port,
                    tuning,
                    ours.process.pid,
                )
