"""tools/list: the agents a caller may run, as MCP tools.

Who sees what (docs/mcp.md): a user, the agents they hold a live entitlement to; a service,
the agents it registered (its own executions need no entitlement); an operator, every agent.
Each at the version a call would run now (Agents.for_run's choice); an agent with nothing
runnable (every version withdrawn, a WASM agent without its module) is not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mcp_types as types

from executor.agents.service import Agents
from executor.entitlements.service import Entitlements
from executor.mcp.naming import tool_names
from executor.records.agents import AgentVersion
from executor.records.principals import Principal, Role

WRAPPED_INPUT = "input"  # the argument that carries an input whose schema is not an object schema
META_AGENT_ID = "executor/agent_id"
META_VERSION = "executor/version"


def is_object_schema(schema: Any) -> bool:
    """What MCP (through 2025-11-25) requires of a tool's input and output schemas: `type: object` at the root."""
    return isinstance(schema, dict) and schema.get("type") == "object"


@dataclass(frozen=True)
class AgentTool:
    """An agent as one caller's tool."""

    name: str
    agent: AgentVersion

    @property
    def wrapped(self) -> bool:
        """The agent's input schema is not an object schema: the input is the `input` argument."""
        return not is_object_schema(self.agent.input_schema)

    @property
    def structured(self) -> bool:
        """The tool declares an outputSchema, so a completed call carries structuredContent."""
        return is_object_schema(self.agent.output_schema)

    def input_of(self, arguments: dict[str, Any]) -> Any:
        return arguments.get(WRAPPED_INPUT) if self.wrapped else arguments

    def to_tool(self) -> types.Tool:
        agent = self.agent
        input_schema = agent.input_schema if not self.wrapped else {
            "type": "object", "properties": {WRAPPED_INPUT: agent.input_schema}, "required": [WRAPPED_INPUT],
            "additionalProperties": False,
        }
        description = agent.description or f"Runs the marketplace agent {agent.name} in a sandbox."
        return types.Tool(
            name=self.name,
            description=f"{description} (executor agent {agent.agent_id}, version {agent.version}; every call "
                        "is an execution with a signed receipt)",
            input_schema=input_schema,
            output_schema=agent.output_schema if self.structured else None,
            annotations=types.ToolAnnotations(read_only_hint=False, open_world_hint=agent.egress is not None),
            _meta={META_AGENT_ID: str(agent.agent_id), META_VERSION: agent.version},
        )

    @property
    def identity(self) -> tuple[str, str, int]:
        """What makes a listed tool the same tool: a new version is a change of the list."""
        return self.name, str(self.agent.agent_id), self.agent.version


class Catalog:
    """The tools of a caller, from the agents and entitlements services."""

    def __init__(self, agents: Agents, entitlements: Entitlements) -> None:
        self.agents = agents
        self.entitlements = entitlements

    async def runnable(self, principal: Principal) -> list[AgentVersion]:
        if principal.role is Role.USER:
            return await self.entitlements.runnable_agents(principal.subject)
        if principal.role is Role.SERVICE:
            return await self.agents.runnable(owner=principal.party)
        return await self.agents.runnable()

    async def tools_for(self, principal: Principal) -> dict[str, AgentTool]:
        """tool name → tool, in the order of the names."""
        versions = await self.runnable(principal)
        names = tool_names((v.agent_id, v.name) for v in versions)
        tools = [AgentTool(names[v.agent_id], v) for v in versions]
        return {tool.name: tool for tool in sorted(tools, key=lambda t: t.name)}

    async def resolve(self, principal: Principal, name: str) -> AgentTool | None:
        """The tool a call names: one of the caller's, else the agent of that name (whose call
        admission then refuses with the reason, e.g. entitlement_missing), else None."""
        listed = (await self.tools_for(principal)).get(name)
        if listed is not None:
            return listed
        agent = await self.agents.by_name(name)
        return AgentTool(name, agent) if agent is not None else None


def identities(tools: dict[str, AgentTool]) -> frozenset[tuple[str, str, int]]:
    return frozenset(tool.identity for tool in tools.values())
