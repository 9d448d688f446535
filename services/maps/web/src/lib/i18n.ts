// Chinese first, English on request: one dictionary, the choice kept in localStorage.

export type Lang = "zh" | "en";
export interface Text { zh: string; en: string }

const KEY = "cityos.lang";
let lang: Lang = (localStorage.getItem(KEY) as Lang) || "zh";
const listeners: Array<() => void> = [];

export function currentLang(): Lang { return lang; }

export function setLang(next: Lang): void {
  lang = next;
  localStorage.setItem(KEY, next);
  document.documentElement.lang = next === "zh" ? "zh-CN" : "en";
  for (const fn of listeners) fn();
}

export function onLangChange(fn: () => void): void { listeners.push(fn); }

/** The label in the current language (a Text, or a plain string as is). */
export function tx(value: Text | string | null | undefined): string {
  if (value == null) return "";
  return typeof value === "string" ? value : value[lang] || value.zh;
}

const DICT: Record<string, Text> = {
  app_name: { zh: "示范市城市运行管理中心", en: "Demo City Operations Center" },
  big_title: { zh: "城市运行综合态势", en: "City situation" },
  console_title: { zh: "指挥调度台", en: "Command console" },
  field_title: { zh: "我的任务", en: "My tasks" },
  sign_in: { zh: "登录", en: "Sign in" },
  sign_out: { zh: "退出", en: "Sign out" },
  username: { zh: "用户名", en: "Username" },
  password: { zh: "密码", en: "Password" },
  sign_in_needed: { zh: "请登录后使用", en: "Please sign in" },
  not_permitted: { zh: "当前账号无权使用本页面", en: "This account may not use this page" },
  sign_in_failed: { zh: "登录失败", en: "Sign-in failed" },
  layers: { zh: "图层", en: "Layers" },
  filters: { zh: "筛选", en: "Filters" },
  live: { zh: "实时", en: "Live" },
  offline: { zh: "连接中断，正在重连", en: "Disconnected, reconnecting" },
  events_ticker: { zh: "实时动态", en: "Live events" },
  wartime: { zh: "战时模式", en: "Wartime mode" },
  draw_area: { zh: "框选区域", en: "Draw area" },
  draw_hint: { zh: "单击添加顶点，双击或点击首点完成", en: "Click to add points; double-click or click the first point to finish" },
  clear: { zh: "清除", en: "Clear" },
  inside_area: { zh: "区域内资源与事件", en: "Inside the area" },
  issue_task: { zh: "下达任务", en: "Issue task" },
  task_text: { zh: "任务内容", en: "Task" },
  task_sent: { zh: "任务已下达", en: "Task issued" },
  select_staff: { zh: "请勾选要派遣的人员", en: "Tick the staff to send" },
  nothing_inside: { zh: "区域内无资源或事件", en: "Nothing inside" },
  no_data: { zh: "暂无数据", en: "No data" },
  unavailable: { zh: "服务暂不可用", en: "Service unavailable" },
  case: { zh: "案件", en: "Case" },
  vehicle: { zh: "车辆", en: "Vehicle" },
  speed: { zh: "速度", en: "Speed" },
  updated: { zh: "更新", en: "Updated" },
  open_in_console: { zh: "在调度台打开", en: "Open in console" },
  queue: { zh: "案件队列", en: "Case queue" },
  routing: { zh: "路由规则", en: "Routing rules" },
  data: { zh: "数据管理", en: "Data" },
  status: { zh: "状态", en: "Status" },
  category: { zh: "类别", en: "Category" },
  division: { zh: "区域", en: "Division" },
  overdue: { zh: "超期", en: "Overdue" },
  search_text: { zh: "搜索文本", en: "Search text" },
  search: { zh: "查询", en: "Search" },
  all: { zh: "全部", en: "All" },
  title: { zh: "标题", en: "Title" },
  reported: { zh: "上报时间", en: "Reported" },
  due: { zh: "处置时限", en: "Due" },
  accept_due: { zh: "受理时限", en: "Accept by" },
  unit: { zh: "处置单位", en: "Unit" },
  reports: { zh: "上报记录", en: "Reports" },
  history: { zh: "办理过程", en: "History" },
  timers: { zh: "时限", en: "Timers" },
  actions: { zh: "操作", en: "Actions" },
  reason: { zh: "原因/说明", en: "Reason / note" },
  classify: { zh: "分类", en: "Classify" },
  accept: { zh: "受理", en: "Accept" },
  reject: { zh: "不予受理", en: "Reject" },
  dispatch: { zh: "派遣", en: "Dispatch" },
  verify: { zh: "核查通过", en: "Verify" },
  rework: { zh: "返工", en: "Rework" },
  close: { zh: "结案", en: "Close" },
  reopen: { zh: "重启", en: "Reopen" },
  merge: { zh: "合并", en: "Merge" },
  merge_into: { zh: "合并到案件号", en: "Merge into case" },
  split: { zh: "拆分所选上报", en: "Split selected reports" },
  start: { zh: "开始处置", en: "Start" },
  finish: { zh: "处置完成", en: "Finish" },
  return: { zh: "退回", en: "Return" },
  default_unit: { zh: "按类别自动", en: "By category (default)" },
  done: { zh: "操作成功", en: "Done" },
  remaining: { zh: "剩余", en: "left" },
  overdue_by: { zh: "已超期", en: "overdue by" },
  masked: { zh: "已脱敏", en: "masked" },
  back: { zh: "返回", en: "Back" },
  load_more: { zh: "加载更多", en: "Load more" },
  datasets: { zh: "数据集登记", en: "Dataset registrations" },
  dead_letters: { zh: "死信(被拒记录)", en: "Dead letters" },
  contribution: { zh: "数据贡献", en: "Data contribution" },
  owner: { zh: "归属部门", en: "Owner" },
  kind: { zh: "类型", en: "Kind" },
  version: { zh: "版本", en: "Version" },
  row: { zh: "行", en: "Row" },
  raw: { zh: "原始记录", en: "Raw record" },
  received: { zh: "接收", en: "Received" },
  accepted: { zh: "有效", en: "Accepted" },
  rejected: { zh: "拒绝", en: "Rejected" },
  validity: { zh: "有效率", en: "Validity" },
  dispatch_absent: { zh: "调度服务未部署，路由规则暂不可编辑", en: "The dispatch service is not deployed: routing rules cannot be edited yet" },
  add_rule: { zh: "新增规则", en: "Add rule" },
  lead_unit: { zh: "牵头单位", en: "Lead unit" },
  level: { zh: "层级", en: "Level" },
  order: { zh: "优先级", en: "Order" },
  save: { zh: "保存", en: "Save" },
  my_tasks: { zh: "我的任务", en: "My tasks" },
  new_report: { zh: "上报事件", en: "Report incident" },
  no_tasks: { zh: "暂无任务", en: "No tasks" },
  navigate: { zh: "导航前往", en: "Navigate" },
  accept_task: { zh: "接单", en: "Accept" },
  progress: { zh: "反馈进展", en: "Report progress" },
  handled: { zh: "已处置", en: "Handled" },
  photo: { zh: "现场照片", en: "Photo" },
  photo_ref: { zh: "照片引用", en: "Photo reference" },
  note: { zh: "说明", en: "Note" },
  describe: { zh: "描述事件", en: "Describe the incident" },
  my_location: { zh: "我的位置", en: "My location" },
  locate: { zh: "定位", en: "Locate" },
  locating: { zh: "定位中…", en: "Locating…" },
  tap_map: { zh: "无法定位时可点击地图选点", en: "If location fails, tap the map" },
  submit: { zh: "提交", en: "Submit" },
  submitted: { zh: "已提交，案件号", en: "Submitted, case" },
  optional: { zh: "可选", en: "optional" },
  services: { zh: "服务状态", en: "Services" },
  field_staff: { zh: "在岗人员", en: "Field staff" },
  staff_picker: { zh: "派给处置人员", en: "Give it to a person" },
  load_staff: { zh: "查看在岗人员（由近及远）", en: "On-duty staff, nearest first" },
  no_staff_on_duty: { zh: "该单位暂无在岗人员", en: "Nobody of this unit is on duty" },
  not_dispatched: { zh: "案件派遣到单位后可指定人员", en: "Dispatch the case to a unit first" },
  assign: { zh: "派给TA", en: "Assign" },
  assigned_to: { zh: "当前处置人", en: "Assigned to" },
  open_tasks: { zh: "在办任务", en: "open tasks" },
  no_position: { zh: "无定位", en: "no position" },
  preview: { zh: "预览分派", en: "Preview" },
  at_hour: { zh: "时间", en: "Time" },
  preview_current: { zh: "现行规则", en: "Rules in force" },
  preview_with_rule: { zh: "保存本规则后", en: "With this rule" },
  preview_absent: { zh: "调度服务暂不可用，无法试算分派（POST /rules/preview）", en: "The dispatch service is not available: no dry run of routing (POST /rules/preview)" },
  level_city: { zh: "市级", en: "city level" },
  level_district: { zh: "区级", en: "district level" },
  level_street: { zh: "街道级", en: "street level" },
  by_rule: { zh: "依据规则", en: "by rule" },
};

export function t(key: string): string {
  const entry = DICT[key];
  return entry ? entry[lang] : key;
}

export const STATUS: Record<string, Text> = {
  received: { zh: "待受理", en: "Received" }, classified: { zh: "已分类", en: "Classified" },
  accepted: { zh: "已受理", en: "Accepted" }, dispatched: { zh: "已派遣", en: "Dispatched" },
  handling: { zh: "处置中", en: "Handling" }, handled: { zh: "已处置", en: "Handled" },
  verified: { zh: "已核查", en: "Verified" }, closed: { zh: "已结案", en: "Closed" },
  merged: { zh: "已合并", en: "Merged" }, returned: { zh: "已退回", en: "Returned" },
  rejected: { zh: "不予受理", en: "Rejected" }, reopened: { zh: "已重启", en: "Reopened" },
};

export const EVENT_KIND: Record<string, Text> = {
  received: { zh: "接收", en: "received" }, classified: { zh: "分类", en: "classified" },
  accepted: { zh: "受理", en: "accepted" }, dispatched: { zh: "派遣", en: "dispatched" },
  started: { zh: "开始处置", en: "started" }, handled: { zh: "处置完成", en: "handled" },
  verified: { zh: "核查", en: "verified" }, closed: { zh: "结案", en: "closed" },
  returned: { zh: "退回", en: "returned" }, rejected: { zh: "不予受理", en: "rejected" },
  reopened: { zh: "重启", en: "reopened" }, merged: { zh: "并入他案", en: "merged" },
  report_added: { zh: "追加上报", en: "report added" },
  reports_merged_in: { zh: "合并上报", en: "reports merged in" },
  split: { zh: "拆分", en: "split" }, split_from: { zh: "拆分新建", en: "split from" },
  reworked: { zh: "返工", en: "rework" }, escalated: { zh: "超时升级", en: "escalated" },
  noted: { zh: "备注", en: "noted" },
};

export const CHANNEL: Record<string, Text> = {
  hotline_12345: { zh: "12345热线", en: "12345 hotline" }, police_110: { zh: "110转办", en: "110 transfer" },
  citizen_app: { zh: "市民App", en: "Citizen app" }, wechat: { zh: "微信", en: "WeChat" },
  grid_app: { zh: "网格员", en: "Grid worker" }, camera_ai: { zh: "视频AI", en: "Camera AI" },
  system: { zh: "系统预警", en: "System warning" },
};

export function statusText(status: string): string { return tx(STATUS[status] ?? status); }

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", {
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
  });
}

/** "2 h 5 min left" / "overdue by 3 min" against now. */
export function fmtDue(iso: string | null | undefined, now = Date.now()): { text: string; late: boolean } {
  if (!iso) return { text: "—", late: false };
  const ms = new Date(iso).getTime() - now;
  const mins = Math.round(Math.abs(ms) / 60000);
  const h = Math.floor(mins / 60);
  const span = lang === "zh" ? (h ? `${h}小时${mins % 60}分` : `${mins}分钟`)
    : (h ? `${h} h ${mins % 60} min` : `${mins} min`);
  return ms >= 0 ? { text: lang === "zh" ? `${t("remaining")}${span}` : `${span} ${t("remaining")}`, late: false }
    : { text: `${t("overdue_by")} ${span}`, late: true };
}
