"""Images: operators list what the engine holds, build from the images folder, and remove what no
agent version pins (docs/images.md). No registry is involved."""

from __future__ import annotations

from executor.api.contract.components import ref
from executor.api.contract.executions import CURSOR, LIMIT
from executor.api.contract.operation import OPERATOR, Operation, Reply, Schema

TAG = "images"
OPERATORS = (OPERATOR,)

SCHEMAS: dict[str, Schema] = {
    "BuildImages": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "names": {"type": "array", "minItems": 1, "items": {"type": "string"},
                      "description": "a non-empty list of image names, from GET /v1/images `buildable`"},
            "all": {"const": True, "description": "only true: build every image (minutes)"},
        },
        # Exactly one of the two: building everything is asked for, never a fallback.
        "oneOf": [{"required": ["names"]}, {"required": ["all"]}],
        "description": "Which images to build: by name, or all of them.",
    },
}

OPERATIONS = (
    Operation(
        "GET", "/v1/images", "listImages", "The executor/ images on the engine", TAG, OPERATORS,
        query=(LIMIT, CURSOR),
        replies=(Reply(200, "A page of the images, by id, each with its tags and how many agent versions pin it, "
                            "and the names that can be built.", ref("ImageList")),),
    ),
    Operation(
        "POST", "/v1/images/build", "buildImages", "Build images from the images folder", TAG, OPERATORS,
        body=ref("BuildImages"),
        replies=(Reply(200, "What was built, or found already built (`cached`: its content had not changed).",
                       ref("ImageBuildResult")),),
        description="A name that is not buildable, or a build that fails, is `request_invalid`.",
        examples={"by name": {"names": ["busybox", "wordcount"]}, "everything": {"all": True}},
    ),
    Operation(
        "DELETE", "/v1/images/{ref}", "deleteImage", "Remove an image with all its tags", TAG, OPERATORS,
        path_params={"ref": {"type": "string", "minLength": 1,
                             "description": "an image reference or id; may hold slashes (executor/busybox:latest)"}},
        replies=(Reply(204, "Removed."),),
        problems=("conflict",),
        description="`conflict` while an agent version pins it (each listed in `errors`, its `pointer` the agent's "
                    "id), or when the engine refuses.",
    ),
)
