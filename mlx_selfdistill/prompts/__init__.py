"""Prompt wording: the project's own chat messages (chat.py, also what training data
looks like) and named prompt styles for evaluation (styles.py, e.g. EvalPlus's)."""

from .chat import FUNCTION_INSTRUCTION, STDIO_INSTRUCTION, assistant_message, chat_messages, raw_prompt, user_message
from .styles import DEFAULT_STYLE, STYLES, PromptStyle, get_style

__all__ = [
    "FUNCTION_INSTRUCTION", "STDIO_INSTRUCTION", "assistant_message", "chat_messages", "raw_prompt", "user_message",
    "DEFAULT_STYLE", "STYLES", "PromptStyle", "get_style",
]
