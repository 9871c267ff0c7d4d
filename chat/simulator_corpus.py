# ruff: noqa: RUF001 - Chinese prose uses full-width punctuation, as it should.
"""Replies the offline simulator gives, in English and Simplified Chinese: every kind of rendering the page has.

Each entry: keywords that pick it, then the Markdown. Together they hold a table, code in several
languages, inline and display maths in all four delimiters, nested lists and a long reply.
"""

from __future__ import annotations

NOTICE = {
    "en": "*Simulated reply: no DeepSeek API key is set on this site. Set `DEEPSEEK_API_KEY` to talk to DeepSeek.*",
    "zh": "*这是模拟回复：本站尚未设置 DeepSeek API 密钥。设置 `DEEPSEEK_API_KEY` 后即可与 DeepSeek 真实对话。*",
}

REASONING = {
    "en": (
        "The user asks about \u201c{topic}\u201d. This is turn {turn} of the conversation, so the earlier "
        "messages matter. I will restate the question, explain the idea step by step, and end with an example."
    ),
    "zh": (
        "用户问的是\u201c{topic}\u201d。这是对话的第 {turn} 轮，需要结合前面的内容。"
        "我先复述问题，再一步步解释，最后给一个例子。"
    ),
}

EN: list[tuple[tuple[str, ...], str]] = [
    (
        ("table", "compare", "comparison", "versus", " vs"),
        """Here is a side-by-side comparison of three common ways to store data:

| Store | Best for | Consistency | Typical latency |
|---|---|---|---|
| PostgreSQL | relational data, transactions | strong | 1–5 ms |
| Redis | caches, counters, pub/sub | per command | < 1 ms |
| S3 | large files, backups | strong (read-after-write) | 20–100 ms |

**Rule of thumb:** keep the truth in PostgreSQL, put what you can recompute in Redis, and move blobs to S3.""",
    ),
    (
        ("code", "python", "javascript", "sql", "bash", "function", "program", "script"),
        """Here is the same task — counting words — in four languages.

```python
from collections import Counter

def top_words(text: str, n: int = 3) -> list[tuple[str, int]]:
    return Counter(text.lower().split()).most_common(n)
```

```javascript
const topWords = (text, n = 3) =>
  Object.entries(text.toLowerCase().split(/\\s+/).reduce((m, w) => ((m[w] = (m[w] || 0) + 1), m), {}))
    .sort((a, b) => b[1] - a[1])
    .slice(0, n);
```

```sql
SELECT word, COUNT(*) AS uses
FROM words
GROUP BY word
ORDER BY uses DESC
LIMIT 3;
```

```bash
tr -s '[:space:]' '\\n' < notes.txt | tr '[:upper:]' '[:lower:]' | sort | uniq -c | sort -rn | head -3
```

Inline code such as `Counter.most_common` is never treated as maths, even with a `$price` in it.""",
    ),
    (
        ("math", "formula", "equation", "integral", "derivative", "quadratic", "probability"),
        """The roots of \\(ax^2 + bx + c = 0\\) are given by the quadratic formula:

\\[
x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}
\\]

The discriminant $\\Delta = b^2 - 4ac$ tells how many real roots there are. Two more classics:

$$
\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}, \\qquad \\int_{-\\infty}^{\\infty} e^{-x^2}\\,dx = \\sqrt{\\pi}
$$

And Euler's identity, \\(e^{i\\pi} + 1 = 0\\), joins five constants in one line.""",
    ),
    (
        ("list", "steps", "plan", "how do i", "how to", "checklist"),
        """A plan in steps, with details under each:

1. **Prepare**
   - Write down what "done" means.
   - Collect what you need:
     1. the data;
     2. access to the servers;
     3. an hour without meetings.
2. **Do the work**
   - Start with the riskiest part.
   - Commit small steps, each with a message that says why.
3. **Check**
   - Run the tests.
   - Ask someone to try it the way a user would.

> Tip: a checklist you actually follow beats a perfect one you don't.""",
    ),
    (
        ("long", "explain", "detail", "essay", "overview", "why"),
        """## How a reply streams to every tab

### 1. The request
When you press Enter, the page sends your message over its WebSocket. The server stores it and starts
the reply as **server-owned work**: closing the tab does not stop it.

### 2. The stream
The server reads DeepSeek's answer chunk by chunk. One writer numbers the pieces (`seq` 1, 2, 3, …)
and publishes them through Redis, so every process, and every tab connected to it, gets the same
pieces in the same order. A tab that joins late first receives the text so far, then the pieces after
it: nothing is missed and nothing is shown twice.

### 3. Stopping
Stop is a message like any other: whichever tab sends it, the process that writes the reply hears it
and closes the request to DeepSeek, so the tokens stop costing money at once.

### 4. Failures
- If DeepSeek is slow to start, the server waits and retries what can be retried.
- If the connection breaks mid-reply, the text so far is kept and the reply is marked as failed.
- If a server process dies, another one notices within seconds and closes the reply cleanly.

### 5. What you see
The page renders Markdown as it arrives — headings, lists, tables, code with highlighting and maths
like \\(E = mc^2\\) — and keeps scrolling unless you scroll up to read. Under each reply are the model,
the tokens used and the time to the first token.

In short: the reply belongs to the server, the tabs only watch it, and every tab sees the same thing.""",
    ),
]

ZH: list[tuple[tuple[str, ...], str]] = [
    (
        ("表格", "对比", "比较", "区别"),
        """下面是三种常见存储方式的对比：

| 存储 | 适用场景 | 一致性 | 典型延迟 |
|---|---|---|---|
| PostgreSQL | 关系型数据、事务 | 强一致 | 1–5 毫秒 |
| Redis | 缓存、计数器、发布/订阅 | 单条命令原子 | 小于 1 毫秒 |
| 对象存储（S3） | 大文件、备份 | 写后读一致 | 20–100 毫秒 |

**经验法则：** 权威数据放在 PostgreSQL，可以重新计算的放进 Redis，大文件交给对象存储。""",
    ),
    (
        ("代码", "编程", "函数", "脚本", "python", "sql", "javascript", "bash"),
        """同一个任务——统计词频——用四种语言来写：

```python
from collections import Counter

def top_words(text: str, n: int = 3) -> list[tuple[str, int]]:
    return Counter(text.lower().split()).most_common(n)
```

```javascript
const topWords = (text, n = 3) =>
  Object.entries(text.toLowerCase().split(/\\s+/).reduce((m, w) => ((m[w] = (m[w] || 0) + 1), m), {}))
    .sort((a, b) => b[1] - a[1])
    .slice(0, n);
```

```sql
SELECT word, COUNT(*) AS uses
FROM words
GROUP BY word
ORDER BY uses DESC
LIMIT 3;
```

```bash
tr -s '[:space:]' '\\n' < notes.txt | sort | uniq -c | sort -rn | head -3
```

行内代码如 `Counter.most_common` 不会被当作公式，即使里面有 `$price` 这样的写法。""",
    ),
    (
        ("数学", "公式", "方程", "积分", "求导", "概率", "证明"),
        """一元二次方程 \\(ax^2 + bx + c = 0\\) 的求根公式是：

\\[
x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}
\\]

其中判别式 $\\Delta = b^2 - 4ac$ 决定实根的个数。再看两个经典结果：

$$
\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}, \\qquad \\int_{-\\infty}^{\\infty} e^{-x^2}\\,dx = \\sqrt{\\pi}
$$

欧拉恒等式 \\(e^{i\\pi} + 1 = 0\\) 用一行式子连起了五个最重要的常数。""",
    ),
    (
        ("步骤", "列表", "计划", "怎么", "如何", "清单"),
        """按步骤来，每一步下面是细节：

1. **准备**
   - 先写清楚"完成"的标准。
   - 准备好需要的东西：
     1. 数据；
     2. 服务器权限；
     3. 一小时不被打扰的时间。
2. **动手**
   - 先做风险最大的部分。
   - 小步提交，每次提交都写明原因。
3. **检查**
   - 跑一遍测试。
   - 请同事按用户的方式试用一次。

> 提示：一份真正会照着做的清单，胜过一份完美却没人看的清单。""",
    ),
    (
        ("详细", "介绍", "解释", "原理", "为什么", "长"),
        """## 一条回复是如何同步到每个标签页的

### 一、发出请求
按下回车后，页面通过 WebSocket 发送你的消息。服务器先把它保存下来，再把生成回复作为**服务器端的任务**启动：
关闭标签页并不会让它停下。

### 二、流式输出
服务器逐块读取 DeepSeek 的回答。唯一的写入者给每一块编号（`seq` 为 1、2、3……），通过 Redis 发布出去，
于是每个进程、以及连在上面的每个标签页，都按相同的顺序收到相同的内容。中途打开的标签页会先收到已有的全文，
再接着收后面的部分：既不会漏，也不会重复。

### 三、停止
"停止"也只是一条消息：无论从哪个标签页发出，负责写这条回复的进程都会收到，并立即关闭发往 DeepSeek 的请求，
token 马上就不再计费。

### 四、出错时
- DeepSeek 迟迟没有响应时，服务器会等待，并对可以重试的错误进行重试。
- 连接在回复中途断开时，已经生成的文字会保留下来，回复标记为失败。
- 某个服务器进程崩溃时，其他进程会在几秒内发现，并把这条回复妥善收尾。

### 五、你看到的
页面会边接收边渲染 Markdown——标题、列表、表格、带高亮的代码，以及像 \\(E = mc^2\\) 这样的公式——
并自动滚动，除非你向上滚动去阅读。每条回复下方会显示模型、用量和首字延迟。

简而言之：回复属于服务器，标签页只是在旁观，而且每个标签页看到的都一样。""",
    ),
]
