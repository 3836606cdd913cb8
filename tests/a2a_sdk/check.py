"""Drives the gateway's A2A binding with the official A2A Python SDK (a2a-sdk, v1.0 JSON-RPC),
a client no one on the team wrote. Run by gateway/tests/a2a_sdk.rs against a real gateway.

Usage: check.py <gateway base URL> <user token> <other user's token> <producer token>
Exits non-zero (with the failing check) when the SDK and the gateway disagree."""

import asyncio
import sys

import httpx
from a2a.client import ClientConfig, create_client
from a2a.types import a2a_pb2 as pb
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError

BASE, USER, OTHER, PRODUCER = sys.argv[1:5]


async def produce(http, path, body):
    r = await http.post(f"{BASE}{path}", json=body, headers={"Authorization": f"Bearer {PRODUCER}"})
    assert r.status_code in (200, 201), (path, r.status_code, r.text)
    return r.json()


def client_for(token):
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return create_client(BASE, ClientConfig(httpx_client=http, streaming=True))


async def main():
    async with httpx.AsyncClient(timeout=10) as http:
        client = await client_for(USER)
        other = await client_for(OTHER)

        # The card the SDK resolved, and a task it reads.
        await produce(http, "/v1/tasks", {"user_id": "sdk-user", "context_id": "ctx", "title": "Report", "task_id": "sdk-1"})
        await produce(http, "/v1/tasks/sdk-1/events", {"artifact": {"artifact_id": "doc", "name": "report", "parts": [{"text": "part one"}]}})
        task = await client.get_task(pb.GetTaskRequest(id="sdk-1"))
        assert task.id == "sdk-1" and task.context_id == "ctx", task
        assert task.status.state == pb.TASK_STATE_SUBMITTED, task.status
        assert task.artifacts[0].parts[0].text == "part one", task.artifacts

        try:
            await other.get_task(pb.GetTaskRequest(id="sdk-1"))
            raise AssertionError("another user read the task")
        except TaskNotFoundError:
            pass

        # Subscribe: the task first, then its updates, until a terminal state.
        seen = []

        async def follow():
            async for event in client.subscribe(pb.SubscribeToTaskRequest(id="sdk-1")):
                seen.append(event.WhichOneof("payload"))
                if event.HasField("status_update") and event.status_update.status.state == pb.TASK_STATE_COMPLETED:
                    return event

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.3)
        await produce(http, "/v1/tasks/sdk-1/events", {"status": {"state": "working", "message": "writing"}})
        await produce(http, "/v1/tasks/sdk-1/events", {"artifact": {"artifact_id": "doc", "parts": [{"text": " and two"}], "append": True, "last_chunk": True}})
        await produce(http, "/v1/tasks/sdk-1/events", {"status": {"state": "completed", "message": "done"}})
        last = await asyncio.wait_for(follower, 10)
        assert seen == ["task", "status_update", "artifact_update", "status_update"], seen
        assert last.status_update.status.message.parts[0].text == "done", last

        # List and page, newest status change first.
        for i in range(3):
            await produce(http, "/v1/tasks", {"user_id": "sdk-user", "context_id": "ctx", "title": f"T{i}", "task_id": f"sdk-l{i}"})
        page = await client.list_tasks(pb.ListTasksRequest(page_size=2))
        assert len(page.tasks) == 2 and page.total_size == 4 and page.next_page_token, page
        assert [t.id for t in page.tasks] == ["sdk-l2", "sdk-l1"], [t.id for t in page.tasks]
        rest = await client.list_tasks(pb.ListTasksRequest(page_size=2, page_token=page.next_page_token))
        assert [t.id for t in rest.tasks] == ["sdk-l0", "sdk-1"] and rest.next_page_token == "", rest

        # Cancel, and cancel again.
        canceled = await client.cancel_task(pb.CancelTaskRequest(id="sdk-l0"))
        assert canceled.status.state == pb.TASK_STATE_CANCELED, canceled.status
        try:
            await client.cancel_task(pb.CancelTaskRequest(id="sdk-l0"))
            raise AssertionError("a terminal task was canceled")
        except TaskNotCancelableError:
            pass

        await client.close()
        await other.close()
    print("a2a-sdk: every check passed")


asyncio.run(main())
